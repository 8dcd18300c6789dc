#!/usr/bin/env bash
# Distributed training: bash tools/dist_train.sh CONFIG GPUS [train.py options]  (see tools/torchrun.sh)
bash "$(dirname "$0")/torchrun.sh" "$(dirname "$0")/train.py" "$2" "$1" "${@:3}"
