#!/usr/bin/env bash
# Install, make sure PostgreSQL is up (the Postgres tests need the real server), lint, test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if command -v pg_isready >/dev/null && ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  if command -v pg_ctlcluster >/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
  fi
fi
export OPENBLAS_NUM_THREADS=1
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy lifecycle assets resources jobs sensors definitions.py
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
