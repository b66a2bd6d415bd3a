#!/usr/bin/env bash
# Install, then run the whole lifecycle on the synthetic demo shop (no servers needed):
# ingest → features → labels → monthly challengers → blocking checks → promotion → scores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/dagster_home}"
export OPENBLAS_NUM_THREADS=1
.venv/bin/lifecycle demo "$@"
