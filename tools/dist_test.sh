#!/usr/bin/env bash
# Distributed testing: bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py options]  (see tools/torchrun.sh)
if [[ $# -lt 3 || "$3" == -* ]]; then
  echo "usage: bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py options]" >&2
  echo "error: CONFIG, CHECKPOINT and GPUS are required" >&2
  exit 2
fi
exec bash "$(dirname "$0")/torchrun.sh" "$(dirname "$0")/test.py" "$3" "$1" "$2" "${@:4}"
