#!/usr/bin/env bash
# Evaluate a checkpoint (mIoU for segmentation configs, mAP for detection configs) and print a results table.
#   bash tools/test.sh CONFIG CHECKPOINT [GPUS] [test.py options]
# GPUS > 1 runs tools/dist_test.sh (torchrun; gloo on CPU). Metrics also go to WORK_DIR/metrics.json.
set -euo pipefail
CONFIG=$1
CHECKPOINT=$2
GPUS=${3:-1}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON=${PYTHON:-$( [[ -x "$ROOT/.venv/bin/python" ]] && echo "$ROOT/.venv/bin/python" || echo python )}
[[ -f "$CHECKPOINT" ]] || { echo "checkpoint '$CHECKPOINT' does not exist" >&2; exit 1; }
if [[ "$GPUS" -gt 1 ]]; then
  PYTHON="$PYTHON" bash "$ROOT/tools/dist_test.sh" "$CONFIG" "$CHECKPOINT" "$GPUS" "${@:4}"
else
  "$PYTHON" "$ROOT/tools/test.py" "$CONFIG" "$CHECKPOINT" "${@:4}"
fi
