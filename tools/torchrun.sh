#!/usr/bin/env bash
# Shared launcher of dist_train.sh and dist_test.sh: bash tools/torchrun.sh SCRIPT NPROC [script args]
# NNODES, NODE_RANK, PORT and MASTER_ADDR come from the environment (defaults: one node, port 29500);
# without GPUs the scripts switch to the gloo backend on CPU.
SCRIPT=$1
NPROC=$2
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# The repository's environment (tools/setup.sh) unless PYTHON names another interpreter.
PYTHON=${PYTHON:-$( [[ -x "$ROOT/.venv/bin/python" ]] && echo "$ROOT/.venv/bin/python" || echo python )}
PYTHONPATH="$ROOT":${PYTHONPATH:-} \
"$PYTHON" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --nproc_per_node="$NPROC" --master_port="${PORT:-29500}" \
    "$SCRIPT" "${@:3}" --launcher pytorch
