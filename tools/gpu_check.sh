#!/usr/bin/env bash
# The GPU acceptance check of a fresh CUDA machine, in one command: set-up, then measurements sized to fit.
#
#   bash tools/gpu_check.sh OUT_DIR --wheelhouse DIR [--budget SECONDS] [--compare-with CPU_OUT_DIR]
#   bash tools/gpu_check.sh OUT_DIR --cpu-dry-run     # the same steps on the CPU (benchmarks at tiny sizes)
#
# 1. set-up: tools/setup.sh --system-torch --no-hf [--wheelhouse DIR] --no-build. With a prebuilt CUDA mmcv wheel
#    in the wheelhouse (tools/make_wheelhouse.sh DIR --profile gpu-check) nothing is compiled. Without one,
#    mmcv is built with CPU ops only (all cores) and deformable attention runs mmcv's pure-PyTorch path
#    (SOMA_MSDA_PYTORCH=1); the CUDA ops are then built in the background into a second venv, and if that build
#    finishes in time the train step is measured again with them. Set-up is never cut short: it completes or
#    fails with its own error, and a failed build leaves no wheel behind (setup.sh caches only finished ones).
# 2. the measurements, each sized to the time left of the budget (default 480 s, 1200 s for the CPU dry run;
#    set-up included; a step that does not fit at its smallest size is skipped and reported as such):
#    - pytest -m gpu tests/test_gpu;
#    - tools/benchmark/train_step.py at the goals' shape (DINOv2-L + Mask2Former, 512x512, batch 4, bf16):
#      full fine-tuning, frozen, LoRA and SoMA step time, images/s, peak memory, as ratios in one run; merged-SoMA
#      slide inference vs the plain backbone (fewer methods/steps when time is short);
#    - tools/benchmark/svd_init.py: the SVD initialisation of ViT-L's and ViT-g's adapted matrices, with its
#      accuracy against float64;
#    - a real training run: tools/demo/run.py --variants soma_ema (the demo's SoMA config, 200 iterations, bf16,
#      validation, EMA, merged adapters, tools/test.sh), its per-domain mIoU next to --compare-with's CPU run;
#    - the largest backbone: tools/analysis/memory_plan.py on configs/soma/soma_dinov3-7b_gta2cbm-512.py (the
#      planned peak, then two real training steps of DINOv3-7B + Mask2Former at 512x512, batch 4, bf16 base,
#      with_cp, random weights: peak memory, step time, the planner's error) and tools/benchmark/svd_init.py
#      --arch 7b (the SVD split of its 189 adapted matrices on the GPU, float64, with its accuracy). Last in line:
#      they run when the budget leaves them time (--budget 900 covers every step).
# 3. OUT_DIR/report.md and OUT_DIR/report.json (tools/benchmark/gpu_report.py); each step's log next to them.
#
# Environment: PYTHON (the interpreter with the machine's torch, default python3; for --cpu-dry-run the one that
# runs the steps, default the venv's), SOMA_VENV (default <repo>/.venv), SOMA_CACHE_DIR, MAX_JOBS (to setup.sh).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
log() { printf '[gpu_check] %s\n' "$*"; }
die() { printf '[gpu_check] ERROR: %s\n' "$*" >&2; exit 2; }

# Seconds each step needs at its full and smallest size on the lent H200 (16 cores); see docs/benchmarks.md.
PYTEST_S=90
TRAIN_STEP_FULL_S=200   # 4 methods x 7 steps + 3 inference models, each in a fresh process building DINOv2-L
TRAIN_STEP_MIN_S=90     # full and SoMA, 3 steps, plain and merged inference
SVD_FULL_S=60           # ViT-L and ViT-g
SVD_MIN_S=25            # ViT-L
DEMO_S=120              # scenes, pretraining, 200 iterations with validation, test
REMEASURE_S=90          # the train step again with the CUDA ops built in the background
LARGE_STEP_S=150        # DINOv3-7B: plan (fake tensors), build on the GPU, 2 steps (not yet measured on a GPU)
SVD_7B_S=150            # DINOv3-7B's 189 matrices in float64 on the GPU, plus the accuracy reference

OUT=""
BUDGET=""
DRY_RUN=0
WHEELHOUSE=""
COMPARE=""
while (($#)); do
  case "$1" in
    --wheelhouse) [[ $# -ge 2 ]] || die "--wheelhouse needs a directory"; WHEELHOUSE="$2"; shift ;;
    --budget) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || die "--budget needs seconds"; BUDGET="$2"; shift ;;
    --compare-with) [[ $# -ge 2 && -d "$2" ]] || die "--compare-with needs the OUT_DIR of an earlier (CPU) check"
                    COMPARE="$(cd "$2" && pwd)"; shift ;;
    --cpu-dry-run) DRY_RUN=1 ;;
    -h|--help) sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option '$1' (see: bash tools/gpu_check.sh --help)" ;;
    *) [[ -z "$OUT" ]] || die "one OUT_DIR only"; OUT="$1" ;;
  esac
  shift
done
# The CPU dry run measures the same steps on 2-16 cores: the demo alone takes minutes there.
[[ -n "$BUDGET" ]] || BUDGET=$([[ "$DRY_RUN" == 1 ]] && echo 1200 || echo 480)
[[ -n "$OUT" ]] || die "usage: bash tools/gpu_check.sh OUT_DIR [--wheelhouse DIR] [--budget S] [--compare-with DIR] [--cpu-dry-run]"
[[ -z "$WHEELHOUSE" || -d "$WHEELHOUSE" ]] || die "--wheelhouse $WHEELHOUSE is not a directory (make it with tools/make_wheelhouse.sh DIR --profile gpu-check)"
mkdir -p "$OUT" || die "cannot create $OUT"
OUT="$(cd "$OUT" && pwd)"
STEPS="$OUT/steps.tsv"
printf 'step\tstatus\tseconds\tnote\n' >"$STEPS"
START=$(date +%s)
FAILED=0
left() { echo $(( START + BUDGET - $(date +%s) )); }
record() { printf '%s\t%s\t%s\t%s\n' "$@" >>"$STEPS"; }

# run_step NAME LOGFILE LIMIT NOTE COMMAND...: runs COMMAND for at most LIMIT seconds and records the outcome.
run_step() {
  local name=$1 logfile=$2 limit=$3 note=$4 status rc begin
  shift 4
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
  record "$name" "$status" "$(( $(date +%s) - begin ))" "$note"
  log "$name: $status in $(( $(date +%s) - begin )) s"
  return $rc
}

# fits NAME SECONDS: whether SECONDS fit in what is left, keeping RESERVE for the steps after this one.
RESERVE=0
fits() { (( $(left) - RESERVE >= $2 )) && return 0; record "$1" "skipped: out of time" 0 "needs $2 s, $(( $(left) - RESERVE )) s left"; log "$1: skipped, out of time"; FAILED=1; return 1; }

# ---------------------------------------------------------------------------------------------- 1. set-up
BACKGROUND_BUILD=""
if [[ "$DRY_RUN" == 1 ]]; then
  PY="${PYTHON:-${SOMA_VENV:-$ROOT/.venv}/bin/python}"
  [[ -x "$PY" ]] || die "--cpu-dry-run uses the set-up environment ($PY): run bash tools/setup.sh first"
  record set-up "skipped: CPU dry run" 0 "the existing environment"
  DEVICE=(--device cpu)
  TRAIN_FULL=(--small --methods full frozen lora soma)
  TRAIN_MIN=(--small --methods full soma)
  SVD_FULL=(--small)
  SVD_MIN=(--small)
  # The 7B config with the 7B's block at 64 dims: the same code path, seconds on a CPU.
  LARGE=(configs/soma/soma_dinov3-7b_gta2cbm-512.py --batch 1 --img-size 64 --measure cpu --cfg-options
         model.backbone.arch=tiny_swiglu "model.backbone.out_indices=[0,1,2,3]" model.backbone.peft.start_block=2
         "model.decode_head.in_channels=[64,64,64,64]")
  SVD_7B=(--small)
else
  command -v nvidia-smi >/dev/null && nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
  setup_args=(--system-torch --no-hf)
  [[ -z "$WHEELHOUSE" ]] || setup_args+=(--wheelhouse "$WHEELHOUSE")
  begin=$(date +%s)
  bash tools/setup.sh "${setup_args[@]}" --no-build >"$OUT/setup.log" 2>&1
  rc=$?
  if (( rc == 0 )); then
    record set-up ok "$(( $(date +%s) - begin ))" "$(grep -o 'prebuilt mmcv wheel.*\|reusing cached mmcv wheel.*\|mmcv .* already installed' "$OUT/setup.log" | head -n 1)"
  elif (( rc == 3 )); then
    # No CUDA wheel: mmcv with CPU ops now (built with every core), the CUDA ops in the background.
    record set-up "no CUDA mmcv wheel" "$(( $(date +%s) - begin ))" "falling back to CPU ops + PyTorch deformable attention"
    export SOMA_MSDA_PYTORCH=1
    begin=$(date +%s)
    FORCE_CUDA=0 bash tools/setup.sh "${setup_args[@]}" >"$OUT/setup-cpu-ops.log" 2>&1 ||
      { record "set-up (CPU ops)" "failed (see setup-cpu-ops.log)" "$(( $(date +%s) - begin ))" ""; FAILED=1
        "${PYTHON:-python3}" tools/benchmark/gpu_report.py "$OUT" || true; die "set-up failed: $OUT/setup-cpu-ops.log"; }
    record "set-up (CPU ops)" ok "$(( $(date +%s) - begin ))" "mmcv built with CPU ops; deformable attention through PyTorch"
    log "building mmcv's CUDA ops in the background (log: $OUT/setup-cuda-ops.log)"
    SOMA_MSDA_PYTORCH=0 SOMA_VENV="$OUT/venv-cuda-ops" MAX_JOBS="${MAX_JOBS:-$(( $(nproc) > 4 ? $(nproc) - 2 : 2 ))}" \
      setsid nice -n 10 bash tools/setup.sh "${setup_args[@]}" >"$OUT/setup-cuda-ops.log" 2>&1 &
    BACKGROUND_BUILD=$!
  else
    record set-up "failed (exit $rc)" "$(( $(date +%s) - begin ))" "see setup.log"
    "${PYTHON:-python3}" tools/benchmark/gpu_report.py "$OUT" || true
    die "set-up failed; its log: $OUT/setup.log"
  fi
  PY="${SOMA_VENV:-$ROOT/.venv}/bin/python"
  DEVICE=(--device cuda)
  TRAIN_FULL=(--methods full frozen lora soma --steps 5 --warmup 2 --infer-repeats 3)
  TRAIN_MIN=(--methods full soma --steps 3 --warmup 1 --infer-repeats 2)
  SVD_FULL=(--arch large giant)
  SVD_MIN=(--arch large)
  LARGE=(configs/soma/soma_dinov3-7b_gta2cbm-512.py --measure cuda)
  SVD_7B=(--arch 7b --methods gram --no-float32)
fi

# ---------------------------------------------------------------------------------------------- 2. measurements
RESERVE=$(( TRAIN_STEP_MIN_S + SVD_MIN_S + DEMO_S ))
if fits "pytest -m gpu" "$PYTEST_S"; then
  run_step "pytest -m gpu" "$OUT/pytest.log" $(( $(left) - RESERVE )) "tests/test_gpu" \
    "$PY" -m pytest tests/test_gpu -m gpu -q -p no:cacheprovider -k "not benchmark_scripts" \
    --junitxml "$OUT/pytest.xml"
fi

RESERVE=$(( SVD_MIN_S + DEMO_S ))
if (( $(left) - RESERVE >= TRAIN_STEP_FULL_S )); then train=("${TRAIN_FULL[@]}"); size="full"; else train=("${TRAIN_MIN[@]}"); size="reduced to fit"; fi
if fits "train-step benchmark" "$TRAIN_STEP_MIN_S"; then
  run_step "train-step benchmark" "$OUT/train_step.log" $(( $(left) - RESERVE )) "${size}: ${train[*]}" \
    "$PY" tools/benchmark/train_step.py "${DEVICE[@]}" "${train[@]}" --json "$OUT/train_step.json"
fi

RESERVE=$DEMO_S
if (( $(left) - RESERVE >= SVD_FULL_S )); then svd=("${SVD_FULL[@]}"); else svd=("${SVD_MIN[@]}"); fi
if fits "SVD init benchmark" "$SVD_MIN_S"; then
  run_step "SVD init benchmark" "$OUT/svd_init.log" $(( $(left) - RESERVE )) "${svd[*]}" \
    "$PY" tools/benchmark/svd_init.py "${DEVICE[@]}" "${svd[@]}" --json "$OUT/svd_init.json"
fi

RESERVE=$(( LARGE_STEP_S + SVD_7B_S ))
[[ -z "$BACKGROUND_BUILD" ]] || RESERVE=$REMEASURE_S
if fits "demo training run" "$DEMO_S"; then
  # Its own data and pretrained ViT under OUT, so that nothing of an earlier run is reused.
  run_step "demo training run" "$OUT/demo.log" $(( $(left) - RESERVE )) "tools/demo/run.py --variants soma_ema" \
    "$PY" tools/demo/run.py --variants soma_ema --work-dir "$OUT/demo" --data-root "$OUT/demo-data" \
    --pretrained "$OUT/demo-data/demo_vit_pretrained.pth"
fi

RESERVE=$SVD_7B_S
[[ -z "$BACKGROUND_BUILD" ]] || RESERVE=$(( REMEASURE_S + SVD_7B_S ))
if fits "7B training step" "$LARGE_STEP_S"; then
  run_step "7B training step" "$OUT/large_step.log" $(( $(left) - RESERVE )) "${LARGE[*]}" \
    "$PY" tools/analysis/memory_plan.py "${LARGE[@]}" --json "$OUT/large_step.json"
fi

RESERVE=0
[[ -z "$BACKGROUND_BUILD" ]] || RESERVE=$REMEASURE_S
if fits "7B SVD init" "$SVD_7B_S"; then
  run_step "7B SVD init" "$OUT/svd_init_7b.log" $(( $(left) - RESERVE )) "${SVD_7B[*]}" \
    "$PY" tools/benchmark/svd_init.py "${DEVICE[@]}" "${SVD_7B[@]}" --json "$OUT/svd_init_7b.json"
fi

if [[ -n "$BACKGROUND_BUILD" ]]; then
  if kill -0 "$BACKGROUND_BUILD" 2>/dev/null; then
    kill -- "-$BACKGROUND_BUILD" 2>/dev/null || kill "$BACKGROUND_BUILD" 2>/dev/null
    record "CUDA-ops build (background)" "cut: not finished in time" 0 "the numbers above use PyTorch deformable attention"
  elif wait "$BACKGROUND_BUILD"; then
    record "CUDA-ops build (background)" ok 0 "$(sed -n 's/.*\] \(built mmcv .*\)/\1/p' "$OUT/setup-cuda-ops.log")"
    if fits "train-step benchmark (CUDA ops)" "$TRAIN_STEP_MIN_S"; then
      SOMA_MSDA_PYTORCH=0 run_step "train-step benchmark (CUDA ops)" "$OUT/train_step_cuda_ops.log" "$(left)" \
        "${TRAIN_MIN[*]}" "$OUT/venv-cuda-ops/bin/python" tools/benchmark/train_step.py "${DEVICE[@]}" \
        "${TRAIN_MIN[@]}" --json "$OUT/train_step_cuda_ops.json"
    fi
  else
    record "CUDA-ops build (background)" failed 0 "see setup-cuda-ops.log"
  fi
fi

# ---------------------------------------------------------------------------------------------- 3. report
record total "$([[ $FAILED == 0 ]] && echo ok || echo incomplete)" "$(( $(date +%s) - START ))" "budget $BUDGET s"
report_args=("$OUT")
[[ "$DRY_RUN" == 0 ]] || report_args+=(--dry-run)
[[ -z "$COMPARE" ]] || report_args+=(--compare-with "$COMPARE")
[[ -z "$WHEELHOUSE" ]] || report_args+=(--wheelhouse "$WHEELHOUSE")
"$PY" tools/benchmark/gpu_report.py "${report_args[@]}" >/dev/null || FAILED=1
log "report: $OUT/report.md ($(( $(date +%s) - START )) s in all)"
exit "$FAILED"
