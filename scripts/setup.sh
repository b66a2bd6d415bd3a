#!/usr/bin/env bash
# Create .venv (if missing) and install the project with its dev tools. Idempotent: when the
# venv was installed from this very pyproject.toml (the stamp below), pip is not run again
# (a no-op pip install still costs ~10 s); SETUP_FORCE=1 reinstalls anyway.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
stamp=".venv/.installed-from"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $(.venv/bin/python -V 2>&1)"
if [ "${SETUP_FORCE:-0}" != "1" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
  && [ -x .venv/bin/lifecycle ]; then
  exit 0
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"
echo "$want" > "$stamp"
