#!/usr/bin/env bash
# Evaluate a checkpoint (mIoU for segmentation configs, mAP for detection configs) and print a results table.
#   bash tools/test.sh CONFIG CHECKPOINT [GPUS] [test.py options]
# GPUS (default 1) > 1 runs tools/dist_test.sh (torchrun; gloo on CPU). Metrics also go to WORK_DIR/metrics.json
# (results of an earlier test there are replaced only with --force).
set -euo pipefail
usage() {
  echo "usage: bash tools/test.sh CONFIG CHECKPOINT [GPUS] [--work-dir DIR] [--tta] [--force] [--non-strict] [--cfg-options ...]" >&2
  echo "error: $1" >&2
  exit 2
}
[[ $# -ge 2 ]] || usage "CONFIG and CHECKPOINT are required"
CONFIG=$1
CHECKPOINT=$2
shift 2
GPUS=1
if [[ $# -gt 0 && "$1" != -* ]]; then  # options may follow CHECKPOINT directly
  GPUS=$1
  shift
fi
[[ "$GPUS" =~ ^[1-9][0-9]*$ ]] || usage "GPUS must be a positive integer, got '$GPUS'"
[[ -f "$CONFIG" ]] || usage "config '$CONFIG' does not exist"
[[ -f "$CHECKPOINT" ]] || usage "checkpoint '$CHECKPOINT' does not exist"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON=${PYTHON:-$( [[ -x "$ROOT/.venv/bin/python" ]] && echo "$ROOT/.venv/bin/python" || echo python )}
if [[ "$GPUS" -gt 1 ]]; then
  PYTHON="$PYTHON" bash "$ROOT/tools/dist_test.sh" "$CONFIG" "$CHECKPOINT" "$GPUS" "$@"
else
  "$PYTHON" "$ROOT/tools/test.py" "$CONFIG" "$CHECKPOINT" "$@"
fi
