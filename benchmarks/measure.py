"""What every benchmark measures with: peak RSS, progress lines, a child process of its own.

Standard library only: a measured process (a spawned child, the direct worker) that imports
this gains no memory from it, so its peak RSS is the work's own.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_STARTED = time.perf_counter()


def progress(message: str) -> None:
    """A line with the seconds since the benchmark started (long runs show where they are)."""
    print(f"[bench {time.perf_counter() - _STARTED:7.1f} s] {message}", flush=True)


def reset_peak_rss() -> None:
    """Start a new high-water mark (Linux: writing 5 to clear_refs resets VmHWM)."""
    # Elsewhere the peak is the process's peak so far (an upper bound).
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM) since the last reset, in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _spawned(queue: Any, job: Callable[..., dict[str, Any]], args: tuple[Any, ...]) -> None:
    try:
        queue.put(job(*args))
    except BaseException as error:  # the parent must not wait forever on a dead child
        queue.put({"error": repr(error)})
        raise


def isolated(job: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run ``job`` in a fresh spawned process (its own peak RSS) and return its result."""
    import multiprocessing as mp  # here: a process that only reads its RSS need not load it

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_spawned, args=(queue, job, args))
    proc.start()
    result = queue.get()
    proc.join()
    if "error" in result:
        raise RuntimeError(f"{job.__name__}{args} failed: {result['error']}")
    return result


def forked(fn: Callable[..., Any], *args: Any) -> tuple[object, int]:
    """Run ``fn`` in a forked child; its (JSON) result and that child's own peak RSS (MiB)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_end)
        try:
            payload = ["ok", fn(*args)]
        except BaseException as exc:  # reported to the parent, which raises
            payload = ["error", repr(exc)]
        os.write(write_end, json.dumps(payload).encode())
        os._exit(0)
    os.close(write_end)
    data = b""
    while chunk := os.read(read_end, 1 << 16):
        data += chunk
    os.close(read_end)
    _, _, usage = os.wait4(pid, 0)
    kind, result = json.loads(data or b'["error", "the child died"]')
    if kind != "ok":
        raise RuntimeError(result)
    return result, usage.ru_maxrss // 1024
