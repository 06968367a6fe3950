#!/usr/bin/env bash
# Regenerates schemas/export/klaviyo.schema.yaml from a fresh demo run in a scratch directory
# (no state or DuckDB file of earlier runs involved). Review `git diff schemas/`, then commit.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
HOME="$work" DLT_DATA_DIR="$work/dlt_data" RUNTIME__DLTHUB_TELEMETRY=false \
  "$python" "$repo/klaviyo_pipeline.py" --demo --pipelines-dir "$work/pipelines" --progress none \
  --export-schema-path "$repo/schemas/export" >/dev/null
echo "wrote schemas/export/klaviyo.schema.yaml"
