#!/usr/bin/env bash
# The GPU acceptance check of a fresh CUDA machine, in one command and a fixed time budget (default 9 min):
#
#   bash tools/gpu_check.sh OUT_DIR [--wheelhouse DIR] [--build-mmcv | --no-build-mmcv] [--budget SECONDS]
#   bash tools/gpu_check.sh OUT_DIR --cpu-dry-run     # the same steps on the CPU at tiny sizes, no set-up
#   bash tools/gpu_check.sh OUT_DIR --plan            # only print the build decision and its estimates
#
# 1. set-up with the machine's torch (tools/setup.sh --system-torch, offline from --wheelhouse if given).
#    mmcv's CUDA ops are built only where the build is estimated to fit the budget with everything else
#    (--build-mmcv / --no-build-mmcv decide instead); otherwise mmcv gets its CPU ops only (FORCE_CUDA=0) and
#    deformable attention runs mmcv's pure-PyTorch path on the GPU (SOMA_MSDA_PYTORCH=1, for every step below).
# 2. pytest -m gpu tests/test_gpu (the small-size benchmark test is left out: step 3 runs the real size).
# 3. tools/benchmark/train_step.py at the goals' shape: DINOv2-L + Mask2Former, 512x512, batch 4, bf16 AMP;
#    full fine-tuning, LoRA and SoMA step time and peak memory; merged-SoMA slide inference vs the plain backbone.
# 4. tools/benchmark/svd_init.py: SoMA's SVD initialisation of ViT-L's 96 matrices on the GPU.
# 5. OUT_DIR/report.md (tools/benchmark/gpu_report.py), with each step's time and status; logs next to it.
# Each step gets what is left of the budget (the later ones a reserve); a step cut short is reported as such.
# If building the CUDA ops fails, set-up is repeated with the fallback.
#
# Environment: PYTHON (the interpreter with the machine's torch; default python3), SOMA_VENV (default
# <repo>/.venv), SOMA_CACHE_DIR, MAX_JOBS, TORCH_CUDA_ARCH_LIST (passed on to tools/setup.sh).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
log() { printf '[gpu_check] %s\n' "$*"; }
die() { printf '[gpu_check] ERROR: %s\n' "$*" >&2; exit 2; }

# Time estimates behind the build decision, in seconds. Measured: mmcv 2.1.0 with CPU ops only takes 9 min on
# 2 cores (about 1080 CPU-seconds). Not measured (no GPU machine yet), estimated: the CUDA ops (59 .cu/.cpp files
# compiled by nvcc for one architecture, on top of the CPU files) about 3x that; a serial tail (the longest
# file, linking) of 60 s; and the other steps on an H100 with 16 cores: wheel install 60, GPU tests 100,
# train-step benchmark 180 (six fresh processes building DINOv2-L), SVD benchmark 40.
CPU_OPS_CPU_S=1080
CUDA_OPS_CPU_S=3300
BUILD_TAIL_S=60
REST_S=380
RESERVE_TRAIN_STEP_S=200
RESERVE_SVD_S=60

OUT=""
BUDGET=540
BUILD=auto
DRY_RUN=0
PLAN=0
WHEELHOUSE=""
while (($#)); do
  case "$1" in
    --wheelhouse) [[ $# -ge 2 ]] || die "--wheelhouse needs a directory"; WHEELHOUSE="$2"; shift ;;
    --build-mmcv) BUILD=yes ;;
    --no-build-mmcv) BUILD=no ;;
    --budget) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || die "--budget needs seconds"; BUDGET="$2"; shift ;;
    --cpu-dry-run) DRY_RUN=1 ;;
    --plan) PLAN=1 ;;
    -h|--help) sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option '$1' (see: bash tools/gpu_check.sh --help)" ;;
    *) [[ -z "$OUT" ]] || die "one OUT_DIR only"; OUT="$1" ;;
  esac
  shift
done
[[ -n "$OUT" ]] || die "usage: bash tools/gpu_check.sh OUT_DIR [--wheelhouse DIR] [--build-mmcv|--no-build-mmcv] [--budget S] [--cpu-dry-run]"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
STEPS="$OUT/steps.tsv"
printf 'step\tstatus\tseconds\tnote\n' >"$STEPS"
START=$(date +%s)
FAILED=0

left() { echo $(( START + BUDGET - $(date +%s) )); }

# run_step NAME LOGFILE RESERVE NOTE COMMAND...: runs COMMAND with what is left of the budget minus RESERVE.
run_step() {
  local name=$1 logfile=$2 reserve=$3 note=$4 limit status rc begin
  shift 4
  limit=$(( $(left) - reserve ))
  if (( limit < 10 )); then
    printf '%s\tskipped: out of time\t0\t%s\n' "$name" "$note" >>"$STEPS"
    log "$name: skipped, out of time"
    FAILED=1
    return 1
  fi
  log "$name (at most ${limit} s; log: $logfile)"
  begin=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >"$logfile" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124|137) status="cut: over ${limit} s" ;;
    *) status="failed (exit $rc)" ;;
  esac
  (( rc == 0 )) || FAILED=1
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$(( $(date +%s) - begin ))" "$note" >>"$STEPS"
  log "$name: $status in $(( $(date +%s) - begin )) s"
  return $rc
}

# ---------------------------------------------------------------------------------------------- 1. set-up
cores=$(nproc)
cuda_estimate=$(( (CPU_OPS_CPU_S + CUDA_OPS_CPU_S) / cores + BUILD_TAIL_S ))
cpu_estimate=$(( CPU_OPS_CPU_S / cores + BUILD_TAIL_S ))
if [[ "$BUILD" == auto ]]; then
  if (( cuda_estimate + REST_S <= BUDGET )); then BUILD=yes; else BUILD=no; fi
  reason="estimated: CUDA-ops build ${cuda_estimate} s on $cores cores + ${REST_S} s for the rest vs budget ${BUDGET} s"
else
  reason="chosen on the command line"
fi
if [[ "$BUILD" == no ]]; then
  export FORCE_CUDA=0 SOMA_MSDA_PYTORCH=1
  decision="mmcv with CPU ops only (build estimated ${cpu_estimate} s); deformable attention through PyTorch on the GPU ($reason)"
else
  decision="mmcv with CUDA ops ($reason)"
fi
log "$decision"
[[ "$PLAN" == 0 ]] || exit 0
if [[ "$DRY_RUN" == 1 ]]; then
  PY="${PYTHON:-$ROOT/.venv/bin/python}"
  [[ -x "$PY" ]] || PY=$(command -v python3)
  printf 'set-up\tskipped: CPU dry run\t0\t%s\n' "$decision" >>"$STEPS"
  DEVICE=(--device cpu)
  TRAIN_SIZE=(--small)
  SVD_SIZE=(--small)
else
  command -v nvidia-smi >/dev/null && nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
  setup_args=(--system-torch)
  [[ -z "$WHEELHOUSE" ]] || setup_args+=(--wheelhouse "$WHEELHOUSE")
  if ! run_step set-up "$OUT/setup.log" $(( REST_S - 60 )) "$decision" bash tools/setup.sh "${setup_args[@]}" &&
     [[ "$BUILD" == yes ]]; then
    # mmcv 2.1.0's CUDA sources may not compile with a new CUDA: the fallback still measures everything else.
    export FORCE_CUDA=0 SOMA_MSDA_PYTORCH=1
    run_step "set-up again without CUDA ops" "$OUT/setup-fallback.log" $(( REST_S - 60 )) \
      "after the CUDA-ops set-up failed (see setup.log)" bash tools/setup.sh "${setup_args[@]}"
  fi
  PY="${SOMA_VENV:-$ROOT/.venv}/bin/python"
  read -r built_device built_seconds < <(sed -n 's/.*\] built mmcv (\(.*\)) in \([0-9]*\) s$/\1 \2/p' \
    "$OUT"/setup*.log | tail -n 1)
  [[ -z "${built_seconds:-}" ]] ||
    printf 'mmcv build\tok\t%s\tmeasured: %s ops on %s cores\n' "$built_seconds" "$built_device" "$cores" >>"$STEPS"
  DEVICE=(--device cuda)
  TRAIN_SIZE=(--methods full lora soma --steps 5 --warmup 2 --infer-repeats 3)
  SVD_SIZE=()
fi

# ---------------------------------------------------------------------------------------------- 2.-4.
run_step "pytest -m gpu" "$OUT/pytest.log" $(( RESERVE_TRAIN_STEP_S + RESERVE_SVD_S )) "tests/test_gpu" \
  "$PY" -m pytest tests/test_gpu -m gpu -q -p no:cacheprovider -k "not benchmark_scripts" \
  --junitxml "$OUT/pytest.xml"
[[ "$DRY_RUN" == 0 ]] || TRAIN_SIZE+=(--methods full lora soma)
run_step "train-step benchmark" "$OUT/train_step.log" "$RESERVE_SVD_S" "tools/benchmark/train_step.py" \
  "$PY" tools/benchmark/train_step.py "${DEVICE[@]}" "${TRAIN_SIZE[@]}" --json "$OUT/train_step.json"
run_step "SVD init benchmark" "$OUT/svd_init.log" 5 "tools/benchmark/svd_init.py" \
  "$PY" tools/benchmark/svd_init.py "${DEVICE[@]}" "${SVD_SIZE[@]}" --json "$OUT/svd_init.json"

# ---------------------------------------------------------------------------------------------- 5. report
printf 'total\t%s\t%s\tbudget %s s\n' "$([[ $FAILED == 0 ]] && echo ok || echo incomplete)" \
  "$(( $(date +%s) - START ))" "$BUDGET" >>"$STEPS"
"$PY" tools/benchmark/gpu_report.py "$OUT" $([[ "$DRY_RUN" == 1 ]] && echo --dry-run) || FAILED=1
log "report: $OUT/report.md ($(( $(date +%s) - START )) s in all)"
exit "$FAILED"
