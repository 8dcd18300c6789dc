#!/usr/bin/env bash
# Distributed training: bash tools/dist_train.sh CONFIG GPUS [train.py options]  (see tools/torchrun.sh)
if [[ $# -lt 2 || "$2" == -* ]]; then
  echo "usage: bash tools/dist_train.sh CONFIG GPUS [train.py options]" >&2
  echo "error: CONFIG and GPUS are required" >&2
  exit 2
fi
exec bash "$(dirname "$0")/torchrun.sh" "$(dirname "$0")/train.py" "$2" "$1" "${@:3}"
