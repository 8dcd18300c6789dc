#!/usr/bin/env bash
# Shared launcher of dist_train.sh and dist_test.sh: bash tools/torchrun.sh SCRIPT NPROC [script args]
# NNODES, NODE_RANK, PORT and MASTER_ADDR come from the environment (defaults: one node, port 29500; a port in
# use on the first node is refused with a free one to give as PORT);
# without GPUs the scripts switch to the gloo backend on CPU.
usage() {
  echo "usage: bash tools/torchrun.sh SCRIPT NPROC [script args]" >&2
  echo "error: $1" >&2
  exit 2
}
[[ $# -ge 2 ]] || usage "SCRIPT and NPROC are required"
SCRIPT=$1
NPROC=$2
[[ "$NPROC" =~ ^[1-9][0-9]*$ ]] || usage "the number of GPUs (processes) must be a positive integer, got '$NPROC'"
[[ -f "$SCRIPT" ]] || usage "script '$SCRIPT' does not exist"
if command -v nvidia-smi >/dev/null 2>&1; then
  VISIBLE=$(nvidia-smi -L 2>/dev/null | wc -l)
  if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
    VISIBLE=$(awk -F, '{print NF}' <<<"$CUDA_VISIBLE_DEVICES")
  fi
  if [[ "$VISIBLE" -gt 0 && "$NPROC" -gt "$VISIBLE" ]]; then
    usage "asked for $NPROC GPUs but this machine shows $VISIBLE (nvidia-smi, CUDA_VISIBLE_DEVICES)"
  fi
fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# The repository's environment (tools/setup.sh) unless PYTHON names another interpreter.
PYTHON=${PYTHON:-$( [[ -x "$ROOT/.venv/bin/python" ]] && echo "$ROOT/.venv/bin/python" || echo python )}
MASTER_PORT_NUMBER=${PORT:-29500}
[[ "$MASTER_PORT_NUMBER" =~ ^[0-9]+$ && "$MASTER_PORT_NUMBER" -ge 1 && "$MASTER_PORT_NUMBER" -le 65535 ]] || {
  echo "error: PORT must be a port number (1-65535), got '$MASTER_PORT_NUMBER'" >&2
  exit 2
}
# The first node listens on the port; a taken one (another distributed job on this machine: all start at 29500)
# would fail inside torchrun with a traceback that does not say what to change. The probe prints a free port.
if [[ "${NODE_RANK:-0}" == "0" ]] && ! FREE_PORT=$("$PYTHON" -c '
import socket, sys
with socket.socket() as probe:
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind(("", int(sys.argv[1])))
    except OSError:
        with socket.socket() as free:
            free.bind(("", 0))
            print(free.getsockname()[1])
        sys.exit(1)
' "$MASTER_PORT_NUMBER"); then
  echo "error: port $MASTER_PORT_NUMBER (PORT) is in use, e.g. by another distributed job on this machine; give this job a free one: PORT=$FREE_PORT bash tools/dist_$(basename "$SCRIPT" .py).sh ..." >&2
  exit 2
fi
PYTHONPATH="$ROOT":${PYTHONPATH:-} \
# torchrun, ending in one line (not its ChildFailedError traceback) when a worker fails.
exec "$PYTHON" -m soma.utils.distributed_launch \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --nproc_per_node="$NPROC" --master_port="$MASTER_PORT_NUMBER" \
    "$SCRIPT" "${@:3}" --launcher pytorch
