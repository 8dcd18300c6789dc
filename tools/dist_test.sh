#!/usr/bin/env bash
# Distributed testing: bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py options]  (see tools/torchrun.sh)
bash "$(dirname "$0")/torchrun.sh" "$(dirname "$0")/test.py" "$3" "$1" "$2" "${@:4}"
