"""What the browser test needs around the UI: a settings file and DAGSTER_HOME the webserver
can read, the webserver as a subprocess on loopback, and Debian's headless Chromium driven by
Playwright (no browser download: the system binary is launched by path)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import pytest
import requests
import yaml

from lifecycle.settings import PROJECT_ROOT, SETTINGS_ENV_VAR, Settings

T = TypeVar("T")
CHROMIUM = os.environ.get("UI_CHROMIUM", "/usr/bin/chromium")
# .ci/run sets this: there a missing browser or driver is a failure, not a skip.
REQUIRED_ENV = "UI_BROWSER_REQUIRED"
SCREENSHOTS_ENV = "UI_SCREENSHOTS"


def missing_browser() -> str | None:
    """Why the browser test cannot run here, or None when it can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python client is not installed (pip install -e '.[dev]')"
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


def screenshot_dir() -> Path:
    """Where screenshots are kept as test artefacts: $UI_SCREENSHOTS or data/screenshots."""
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or PROJECT_ROOT / "data" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_settings(settings: Settings, path: Path) -> Path:
    """The test's settings as a YAML file, so the webserver's code location loads the same world."""
    path.write_text(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False))
    return path


def make_home(home: Path) -> Path:
    """A DAGSTER_HOME with the project's own dagster.yaml (SQLite under $DAGSTER_HOME)."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT_ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    return home


def write_workspace(path: Path) -> Path:
    """A workspace naming the project's definitions.py by absolute path."""
    workspace = {
        "load_from": [
            {
                "python_file": {
                    "relative_path": str(PROJECT_ROOT / "definitions.py"),
                    "working_directory": str(PROJECT_ROOT),
                    "location_name": "ml_lifecycle",
                }
            }
        ]
    }
    path.write_text(yaml.safe_dump(workspace))
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def webserver(
    home: Path, settings_file: Path, workspace: Path, log: Path, timeout_s: float = 90
) -> Iterator[str]:
    """``dagster-webserver`` on a free loopback port; yields its base URL once it answers and
    its code location has loaded; the whole process group is killed on exit."""
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        SETTINGS_ENV_VAR: str(settings_file),
        "OPENBLAS_NUM_THREADS": "1",
    }
    exe = Path(sys.executable).with_name("dagster-webserver")
    cmd = [str(exe), "-h", "127.0.0.1", "-p", str(port), "-w", str(workspace)]
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=PROJECT_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_loaded(proc, url, log, timeout_s)
        # The UI's one-off "Join the Dagster community" dialog opens a second after the first
        # page load on loopback unless the instance has recorded it as seen: record that.
        requests.post(f"{url}/graphql", json={"query": "mutation { setNuxSeen }"}, timeout=10)
        yield url
    finally:
        _stop(proc)


def _wait_until_loaded(proc: subprocess.Popen, url: str, log: Path, timeout_s: float) -> None:
    """Poll /server_info, then the workspace until the code location has loaded; a location
    that failed to load (bad settings, import error) fails here with its error message."""
    deadline = time.monotonic() + timeout_s
    query = (
        "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus "
        "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
    )
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dagster-webserver exited {proc.returncode}:\n{log.read_text()}")
        try:
            if requests.get(f"{url}/server_info", timeout=2).ok:
                reply = requests.post(f"{url}/graphql", json={"query": query}, timeout=5).json()
                entries = reply["data"]["workspaceOrError"]["locationEntries"]
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    errors = [
                        e["locationOrLoadError"]["message"]
                        for e in entries
                        if e["locationOrLoadError"]["__typename"] == "PythonError"
                    ]
                    if errors:
                        raise RuntimeError(f"code location failed to load: {errors}")
                    return
        except (requests.RequestException, KeyError, TypeError, ValueError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"dagster-webserver not ready after {timeout_s}s:\n{log.read_text()}")


def _stop(proc: subprocess.Popen) -> None:
    """End the webserver and the code server it started (same process group)."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@contextmanager
def browser_page(wait_ms: int) -> Iterator[Any]:
    """A headless Chromium tab at 1600×1000 that waits ``wait_ms`` for anything it is asked.

    Dagster's one-off "Join the Dagster community" dialog covers the page when it shows up:
    the tab skips it whenever it gets in the way of an action or assertion."""
    from playwright.sync_api import sync_playwright  # only where a browser test runs

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1600, "height": 1000})
            context.set_default_timeout(wait_ms)
            tab = context.new_page()
            tab.add_locator_handler(
                tab.get_by_text("Join the Dagster community"),
                lambda: tab.get_by_role("button", name="Skip").click(),
            )
            yield tab
        finally:
            browser.close()


@contextmanager
def served(
    root: Path, play: Callable[[dg.DagsterInstance], tuple[Settings, T]]
) -> Iterator[tuple[str, T]]:
    """Play a lifecycle in a real DAGSTER_HOME under ``root`` (``play`` returns the settings it
    ran with and what the tests check against), then serve it with dagster-webserver: yields
    the UI's URL and that result; the webserver is stopped afterwards."""
    home = make_home(root / "dagster_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", str(home))
        started = time.monotonic()
        with dg.DagsterInstance.get() as instance:
            settings, told = play(instance)
        print(f"lifecycle: {time.monotonic() - started:.0f}s")
    settings_file = write_settings(settings, root / "settings.yaml")
    workspace = write_workspace(root / "workspace.yaml")
    started = time.monotonic()
    with webserver(home, settings_file, workspace, root / "webserver.log") as url:
        print(f"webserver ready: {time.monotonic() - started:.0f}s")
        yield url, told
