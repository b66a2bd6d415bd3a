#!/usr/bin/env bash
# The UI on the project's local instance, with the environment every process of it needs: the
# webserver creates runs launched from the UI (their planned events), the code server and its
# run workers import definitions.py. See resources/instance_env.py for why each is set.
set -euo pipefail
cd "$(dirname "$0")/.."
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/dagster_home}"
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"
export DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS="${DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS:-true}"
export DAGSTER_EVENT_BATCH_SIZE="${DAGSTER_EVENT_BATCH_SIZE:-500}"
exec .venv/bin/dagster dev "$@"
