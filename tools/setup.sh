#!/usr/bin/env bash
# Set up SoMA's Python environment on a fresh machine (CPU or GPU), idempotently.
#
#   bash tools/setup.sh                      # creates .venv: pinned torch, requirements.txt, `pip install -e .`
#   bash tools/setup.sh --system-torch       # keep the machine's torch/torchvision (>= 2.6, any CUDA)
#   bash tools/setup.sh --wheelhouse DIR     # offline: install from DIR alone (tools/make_wheelhouse.sh)
#   bash tools/setup.sh --no-hf              # without the HF extra (peft, transformers: requirements-hf.txt)
#   bash tools/setup.sh --no-build           # never compile mmcv: exit 3 if no prebuilt or cached wheel matches
#
# mmcv 2.1.0 (needed by mmseg 1.2.2 / mmdet 3.3.0) has no wheel on PyPI. The wheel for this machine is keyed
# by Python, torch and device, mmcv-2.1.0-torch<ver>-cp<py>-<cpu | cu<cuda>-arch<list>>, and taken, without
# compiling, from the first place that has one: the wheelhouse's mmcv/<key>/ (built elsewhere with
# tools/build_mmcv_wheel.sh; for CUDA, a wheel whose architectures include this machine's also matches), then
# the cache ${SOMA_CACHE_DIR:-~/.cache/soma}/wheels/<key>/. Otherwise it is built from source with its ops
# once and cached there.
# CUDA ops are built when torch sees a GPU (or FORCE_CUDA=1) and nvcc is found (CUDA_HOME or PATH), for
# TORCH_CUDA_ARCH_LIST (default: the visible GPUs' compute capabilities), with MAX_JOBS parallel jobs (default:
# all cores); FORCE_CUDA=0 builds CPU ops only (with SOMA_MSDA_PYTORCH=1 on a GPU machine: a few minutes less). On a machine whose torch sees a GPU the final check runs mmcv's deformable-attention CUDA kernel
# against its pure-PyTorch function, and refuses an mmcv without CUDA ops unless SOMA_MSDA_PYTORCH=1 accepts
# the pure-PyTorch path (README, "GPU machines"). A second run finds the environment stamped healthy and only
# re-runs the checks (seconds).
#
# OpenCV: mmengine's and mmcv's wheels ask for opencv-python; where the interpreter already has another OpenCV
# build (opencv-python-headless, as on many GPU images), the venv records an opencv-python stand-in of the same
# version instead of installing a second OpenCV (the choice mmcv's own setup.py makes when it builds).
#
# --system-torch (or SOMA_SYSTEM_TORCH=1): the venv is created with --system-site-packages from PYTHON (default
# python3), so it sees the machine's torch (if PYTHON is itself a venv, a .pth file points at its site-packages);
# torch and torchvision are then never installed or replaced, and requirements.txt's torch pins are not used.
#
# Environment: SOMA_VENV (default <repo>/.venv), SOMA_CACHE_DIR, PYTHON (default python3.11 or python3;
# python3 with --system-torch), SOMA_SYSTEM_TORCH, SOMA_WHEELHOUSE, FORCE_CUDA, TORCH_CUDA_ARCH_LIST, CUDA_HOME,
# MAX_JOBS, SOMA_MSDA_PYTORCH.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SOMA_VENV:-$ROOT/.venv}"
CACHE="${SOMA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/soma}"
SYSTEM_TORCH="${SOMA_SYSTEM_TORCH:-0}"
WITH_HF=1
NO_BUILD=0
WHEELHOUSE="${SOMA_WHEELHOUSE:-}"
MMCV_VERSION=2.1.0
STAMP="$VENV/.soma-setup-ok"
MMCV_MARK="$VENV/.soma-mmcv"  # the cache key of the mmcv wheel installed in this venv

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

while (($#)); do
  case "$1" in
    --system-torch) SYSTEM_TORCH=1 ;;
    --wheelhouse) [[ $# -ge 2 ]] || die "--wheelhouse needs a directory"; WHEELHOUSE="$2"; shift ;;
    --wheelhouse=*) WHEELHOUSE="${1#*=}" ;;
    --no-hf) WITH_HF=0 ;;
    --no-build) NO_BUILD=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see: bash tools/setup.sh --help)" ;;
  esac
  shift
done
[[ "$SYSTEM_TORCH" == 0 ]] || SYSTEM_TORCH=1
if [[ "$SYSTEM_TORCH" == 1 ]]; then
  PYTHON="${PYTHON:-$(command -v python3)}"
else
  PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
fi

PIP_SOURCE=()
if [[ -n "$WHEELHOUSE" ]]; then
  [[ -d "$WHEELHOUSE" ]] || die "wheelhouse '$WHEELHOUSE' is not a directory (make one with tools/make_wheelhouse.sh)"
  WHEELHOUSE="$(cd "$WHEELHOUSE" && pwd)"
  # DIR alone: no index, no find-links, constraints or other settings from pip's config files or environment.
  export PIP_CONFIG_FILE=/dev/null
  unset PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_CONSTRAINT PIP_REQUIREMENT
  PIP_SOURCE=(--no-index --find-links "$WHEELHOUSE")
fi

# The stamp records what was installed; any change to these inputs forces a re-install.
wanted_stamp() {
  { cat "$ROOT/requirements.txt" "$ROOT/requirements-hf.txt" "$ROOT/pyproject.toml" "$ROOT/tools/setup.sh"
    echo "system-torch=$SYSTEM_TORCH hf=$WITH_HF"; } |
    sha256sum | cut -d' ' -f1
}

verify_imports() {
  "$VENV/bin/python" - <<'PY'
import importlib, sys
failed = []
# distutils.errors: mmengine's environment report at the start of every run (setuptools' shim on Python >= 3.12).
for name in ("torch", "torchvision", "timm", "mmengine", "mmcv.ops", "mmseg.models", "mmdet.models", "soma",
             "distutils.errors"):
    try:
        importlib.import_module(name)
    except Exception as exc:  # report every broken import, not just the first one
        failed.append(f"  {name}: {type(exc).__name__}: {exc}")
if failed:
    print("[setup] these imports fail:\n" + "\n".join(failed), file=sys.stderr)
    sys.exit(1)
import torch, mmcv, mmseg, mmdet, timm
print(f"[setup] OK: torch {torch.__version__}, mmcv {mmcv.__version__}, mmseg {mmseg.__version__}, "
      f"mmdet {mmdet.__version__}, timm {timm.__version__}, cuda available: {torch.cuda.is_available()}")
PY
}

# On a machine whose torch sees a GPU: mmcv's deformable attention must run there (its CUDA kernel, checked
# against the pure-PyTorch function), or the pure-PyTorch path must have been chosen with SOMA_MSDA_PYTORCH=1.
verify_gpu_ops() {
  "$VENV/bin/python" - <<'PY'
import os, sys
import torch
if not torch.cuda.is_available():
    sys.exit(0)
from soma.utils.mmcv_ops import ENV_MSDA_PYTORCH, mmcv_has_cuda_ops, msda_kernel_error
if not mmcv_has_cuda_ops():
    if os.environ.get(ENV_MSDA_PYTORCH, "0") not in ("0", ""):
        print(f"[setup] GPU: mmcv has no CUDA ops; {ENV_MSDA_PYTORCH}=1 runs MultiScaleDeformableAttention "
              "through its pure-PyTorch path (slower, more memory); other compiled mmcv ops cannot run on the GPU")
        sys.exit(0)
    import mmcv
    print(f"[setup] this machine's torch sees a GPU, but the mmcv at {os.path.dirname(mmcv.__file__)} was built "
          "without CUDA ops (a wheel from a CPU machine?): Mask2Former and DINO would fail at their first "
          "MultiScaleDeformableAttention. Make nvcc available (the CUDA toolkit of torch's CUDA "
          f"{torch.version.cuda}: load its module or set CUDA_HOME) and re-run tools/setup.sh here, which builds "
          f"and caches a CUDA wheel; or set {ENV_MSDA_PYTORCH}=1 to run deformable attention through mmcv's "
          "pure-PyTorch path instead (slower, more memory).", file=sys.stderr)
    sys.exit(1)
error = msda_kernel_error("cuda", torch.float64)
if not error <= 1e-10:
    print(f"[setup] mmcv's MultiScaleDeformableAttention CUDA kernel differs from its pure-PyTorch function by "
          f"{error:.3g} (float64, tolerance 1e-10): the CUDA build is broken; delete its cached wheel and re-run.",
          file=sys.stderr)
    sys.exit(1)
print(f"[setup] GPU: mmcv's MultiScaleDeformableAttention CUDA kernel matches the PyTorch path "
      f"(max abs error {error:.1e} in float64) on {torch.cuda.get_device_name()}")
PY
}

start=$(date +%s)
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(wanted_stamp)" ]]; then
  if verify_imports && verify_gpu_ops; then
    log "environment at $VENV is up to date ($(( $(date +%s) - start )) s)"
    exit 0
  fi
  log "the environment at $VENV fails the checks above (a venv set up on another machine?): installing again"
fi

# From here on the environment is not healthy until the final check writes the stamp again.
rm -f "$STAMP"
if [[ "$SYSTEM_TORCH" == 1 ]]; then
  system_torch=$("$PYTHON" -c 'import os, torch, torchvision; print(os.path.dirname(os.path.dirname(torch.__file__)), torch.__version__, torchvision.__version__)' 2>/dev/null) ||
    die "--system-torch: $PYTHON cannot import torch and torchvision; point PYTHON at the interpreter that has them"
  read -r torch_site torch_full torchvision_full <<<"$system_torch"
  "$PYTHON" -c "import sys, torch; sys.exit(tuple(map(int, torch.__version__.split('.')[:2])) < (2, 6))" ||
    die "--system-torch: torch $torch_full is older than 2.6, which this project needs; use the default set-up"
  if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating virtualenv $VENV with $PYTHON, seeing its torch $torch_full"
    "$PYTHON" -m venv --system-site-packages "$VENV"
  fi
  venv_site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  if ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
    # PYTHON is itself a virtualenv, whose packages --system-site-packages does not reach: all of its package
    # folders (its own and those its .pth files add: torch's, OpenCV's, ...) are added as site folders, so that
    # their own .pth files run too (setuptools' distutils shim, which mmengine needs on Python >= 3.12).
    "$PYTHON" - "$torch_site" >"$venv_site/soma-system-torch.pth" <<'PY'
import sys
folders = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
folders += [sys.argv[1]] if sys.argv[1] not in folders else []
print("\n".join(f"import site; site.addsitedir({folder!r})" for folder in folders))
PY
  fi
  seen=$("$VENV/bin/python" -c 'import torch; print(torch.__version__)' 2>/dev/null || true)
  [[ "$seen" == "$torch_full" ]] ||
    die "--system-torch: $VENV sees torch '${seen:-none}', not $PYTHON's $torch_full; remove $VENV or set SOMA_VENV"
  TORCH_INSTALL=()
  # Nothing may replace the machine's torch: requirements without the torch pins, and the versions held fixed.
  requirements=$(mktemp)
  constraints=$(mktemp)
  grep -vE '^(torch|torchvision)([=<>!~ ;]|$)' "$ROOT/requirements.txt" >"$requirements"
  [[ "$WITH_HF" == 0 ]] || cat "$ROOT/requirements-hf.txt" >>"$requirements"
  printf 'torch==%s\ntorchvision==%s\n' "${torch_full%%+*}" "${torchvision_full%%+*}" >"$constraints"
  REQUIREMENTS=(-r "$requirements")
  HOLD_TORCH=(-c "$constraints")
else
  [[ -x "$VENV/bin/python" ]] || { log "creating virtualenv $VENV with $PYTHON"; "$PYTHON" -m venv "$VENV"; }
  # requirements.txt's pins, installed first so that the mmcv build compiles against them.
  mapfile -t TORCH_INSTALL < <(grep -E '^(torch|torchvision)==' "$ROOT/requirements.txt")
  REQUIREMENTS=(-r "$ROOT/requirements.txt")
  [[ "$WITH_HF" == 0 ]] || REQUIREMENTS+=(-r "$ROOT/requirements-hf.txt")
  HOLD_TORCH=()
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

log "installing ${TORCH_INSTALL[*]:+${TORCH_INSTALL[*]} and }build tools"
"${PIP[@]}" install -q "${PIP_SOURCE[@]}" "${HOLD_TORCH[@]}" "${TORCH_INSTALL[@]}" \
  "setuptools>=77.0.3,<81" wheel ninja "numpy>=1.26"

# An OpenCV the interpreter already has (opencv-python-headless, ...) stands in for opencv-python.
"$PY" - <<'PY'
import importlib.metadata as metadata, sysconfig
from pathlib import Path
names = {dist.metadata["Name"].lower() for dist in metadata.distributions()}
others = sorted(n for n in names if n.startswith("opencv-") and n != "opencv-python")
if "opencv-python" not in names and others:
    version = metadata.version(others[0])
    info = Path(sysconfig.get_paths()["purelib"], f"opencv_python-{version}.dist-info")
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: opencv-python\nVersion: {version}\n"
                                   f"Summary: stand-in: cv2 comes from {others[0]} (tools/setup.sh)\n")
    (info / "INSTALLER").write_text("soma-setup\n")
    (info / "RECORD").write_text("")
    print(f"[setup] opencv-python {version}: the installed {others[0]} stands in for it")
PY

# ------------------------------------------------------------------------------------------- mmcv: CPU or CUDA
read -r torch_version torch_cuda gpu_archs < <("$PY" -c '
import torch
caps = sorted({"%d.%d" % torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
              if torch.cuda.is_available() else [])
print(torch.__version__.split("+")[0], torch.version.cuda or "none", ";".join(caps) or "none")') || true
[[ -n "${torch_version:-}" ]] || die "$PY cannot import torch (see the error above)"
py_tag=$("$PY" -c 'import sys; print(f"cp{sys.version_info.major}{sys.version_info.minor}")')

# mmcv_key DEVICE: the name of the mmcv wheel this machine needs (also tools/build_mmcv_wheel.sh's folder name).
mmcv_key() { echo "mmcv-$MMCV_VERSION-torch$torch_version-$py_tag-$1"; }

# prebuilt_wheel KEY ARCHS: a wheel in the wheelhouse's mmcv/ for this Python, torch and CUDA whose architectures
# include ARCHS ("" for a CPU wheel); prints nothing and explains each near miss on stderr when none matches.
prebuilt_wheel() {
  [[ -n "$WHEELHOUSE" && -d "$WHEELHOUSE/mmcv" ]] || return 0
  "$PY" - "$WHEELHOUSE/mmcv" "$1" "$2" "$MMCV_VERSION" "$torch_version" "$py_tag" "$torch_cuda" <<'PY'
import sys
from pathlib import Path
folder, key, archs, version, torch_version, py_tag, cuda = sys.argv[1:]
need = {a.removesuffix("+PTX") for a in archs.replace(" ", ";").split(";") if a}
near = []
for build in sorted(Path(folder).glob("*/BUILD.txt")):
    info = dict(line.split("=", 1) for line in build.read_text().splitlines() if "=" in line)
    wheels = sorted(build.parent.glob(f"mmcv-{version}-*.whl"))
    have = {a.removesuffix("+PTX") for a in info.get("archs", "none").replace(" ", ";").split(";")} - {"none"}
    wrong = [f"{what} {got} (here: {want})" for what, got, want in (
        ("Python", "cp" + info.get("python", "?").replace(".", ""), py_tag),
        ("torch", info.get("torch", "?").split("+")[0], torch_version),
        ("CUDA", info.get("cuda", "?"), cuda if need else "none"),  # "none": a CPU-ops build
    ) if got != want]
    if need and not need <= have:
        wrong.append(f"architectures {info.get('archs')} (here: {';'.join(sorted(need))})")
    if not wheels:
        wrong.append("no wheel in the folder")
    if not wrong:
        print(wheels[0])
        sys.exit(0)
    near.append(f"[setup]   {build.parent.name}: built for " + ", ".join(wrong))
if near:
    print(f"[setup] no prebuilt mmcv wheel in {folder} matches {key}:", *near, sep="\n", file=sys.stderr)
PY
}

# find_wheel DEVICE ARCHS: sets `wheel` to a wheel for this machine that needs no build, from the wheelhouse's
# prebuilt ones or the cache ("" if none), and `key`/`wheel_dir` to DEVICE's.
find_wheel() {
  key=$(mmcv_key "$1")
  wheel_dir="$CACHE/wheels/$key"
  wheel=$(prebuilt_wheel "$key" "$2")
  if [[ -n "$wheel" ]]; then
    log "prebuilt mmcv wheel from the wheelhouse: $wheel ($(sed -n 's/^built=//p' "$(dirname "$wheel")/BUILD.txt"))"
    return
  fi
  wheel=$(ls "$wheel_dir"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n 1 || true)
  local legacy="$CACHE/wheels/mmcv-$MMCV_VERSION-torch$torch_version-$py_tag"  # before the key named the device
  if [[ -z "$wheel" && "$1" == cpu ]] && ls "$legacy"/mmcv-*.whl >/dev/null 2>&1; then
    wheel=$(ls "$legacy"/mmcv-"$MMCV_VERSION"-*.whl | head -n 1)  # only CPU machines built these
  fi
  [[ -z "$wheel" ]] || log "reusing cached mmcv wheel $wheel"
}

device=cpu
archs=""
if [[ "${FORCE_CUDA:-}" == 0 ]]; then
  [[ "$gpu_archs" == none || "${SOMA_MSDA_PYTORCH:-0}" != 0 ]] ||
    die "FORCE_CUDA=0 installs mmcv without CUDA ops, but torch sees a GPU: set SOMA_MSDA_PYTORCH=1 as well"
  log "FORCE_CUDA=0: mmcv without CUDA ops"
elif [[ "${FORCE_CUDA:-0}" == 1 || "$gpu_archs" != none ]]; then
  [[ "$torch_cuda" != none ]] || die "FORCE_CUDA=1, but torch $torch_version is a CPU-only build"
  archs="${TORCH_CUDA_ARCH_LIST:-}"
  [[ -n "$archs" || "$gpu_archs" == none ]] || archs="$gpu_archs"
  [[ -n "$archs" ]] || die "FORCE_CUDA=1 without a visible GPU: set TORCH_CUDA_ARCH_LIST (e.g. 9.0 for H100, 8.0 for A100)"
  device="cu${torch_cuda//./}-arch$(tr -c 'A-Za-z0-9.+\n' '_' <<<"$archs")"
fi
key=$(mmcv_key "$device")
wheel_dir="$CACHE/wheels/$key"
if [[ "$(cat "$MMCV_MARK" 2>/dev/null)" == "$key" ]] &&
   "$PY" -c "import mmcv, mmcv.ops, sys; sys.exit(mmcv.__version__ != '$MMCV_VERSION')" 2>/dev/null; then
  log "mmcv $MMCV_VERSION ($device) already installed"
else
  find_wheel "$device" "$archs"
  if [[ -z "$wheel" && "$NO_BUILD" == 1 ]]; then
    printf '[setup] ERROR: --no-build: no prebuilt (--wheelhouse DIR/mmcv/) or cached mmcv wheel matches %s; make one with tools/build_mmcv_wheel.sh\n' "$key" >&2
    exit 3
  fi
  if [[ -z "$wheel" && "$device" != cpu ]]; then
    # Only a build needs nvcc.
    nvcc="${CUDA_HOME:+$CUDA_HOME/bin/nvcc}"
    [[ -n "$nvcc" && -x "$nvcc" ]] || nvcc=$(command -v nvcc || true)
    if [[ -z "$nvcc" ]]; then
      [[ "${SOMA_MSDA_PYTORCH:-0}" != 0 ]] || die "torch sees a GPU (or FORCE_CUDA=1), no prebuilt mmcv wheel \
matches ($key) and nvcc is not found, so mmcv's CUDA ops cannot be built: build a wheel on another machine \
(tools/build_mmcv_wheel.sh) and pass --wheelhouse, or load the CUDA $torch_cuda toolkit (module load cuda / set \
CUDA_HOME) and re-run; or set SOMA_MSDA_PYTORCH=1 to install mmcv without CUDA ops and run deformable attention \
through its pure-PyTorch path (slower, more memory)"
      log "no nvcc: mmcv without CUDA ops; SOMA_MSDA_PYTORCH=1 runs deformable attention in PyTorch"
      device=cpu
      find_wheel cpu ""
    else
      nvcc_cuda=$("$nvcc" --version | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p')
      [[ "${nvcc_cuda%%.*}" == "${torch_cuda%%.*}" ]] ||
        die "nvcc $nvcc is CUDA $nvcc_cuda but torch was built with CUDA $torch_cuda: point CUDA_HOME at a CUDA ${torch_cuda%%.*}.x toolkit"
      export FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$archs"
      export CUDA_HOME="${CUDA_HOME:-$(dirname "$(dirname "$(readlink -f "$nvcc")")")}"
      # Headers that torch's CUDA headers include but some toolkits lack (cusparse.h, ...) come with torch's
      # nvidia-* wheels.
      nvidia_includes=$("$PY" -c 'import glob, os
try:
    import nvidia
except ImportError:
    raise SystemExit
print(":".join(d for p in nvidia.__path__ for d in sorted(glob.glob(os.path.join(p, "*", "include")))))')
      [[ -z "$nvidia_includes" ]] || export CPATH="${CPATH:+$CPATH:}$nvidia_includes"
    fi
  fi
  if [[ -z "$wheel" ]]; then
    jobs="${MAX_JOBS:-$(nproc)}"
    log "building mmcv $MMCV_VERSION with ${device/cpu/CPU} ops from source on $jobs jobs (CPU ops: about 9 min on \
2 cores; cached in $wheel_dir)"
    build=$(mktemp -d)
    trap 'rm -rf "$build"' EXIT
    if [[ -n "$WHEELHOUSE" ]]; then
      [[ -f "$WHEELHOUSE/src/mmcv-$MMCV_VERSION.tar.gz" ]] ||
        die "$WHEELHOUSE/src/mmcv-$MMCV_VERSION.tar.gz is missing (tools/make_wheelhouse.sh puts mmcv's source there)"
      cp "$WHEELHOUSE/src/mmcv-$MMCV_VERSION.tar.gz" "$build/"
    else
      "${PIP[@]}" download -q --no-deps --no-build-isolation --no-binary :all: "mmcv==$MMCV_VERSION" -d "$build"
    fi
    tar -xzf "$build"/mmcv-"$MMCV_VERSION".tar.gz -C "$build"
    # torch >= 2.10 headers need C++20; mmcv 2.1.0 hard-codes -std=c++17 (a no-op on make_wheelhouse's copy).
    sed -i "s/'-std=c++17'/'-std=c++20'/g" "$build/mmcv-$MMCV_VERSION/setup.py"
    build_start=$(date +%s)
    if [[ "$device" == cpu ]]; then
      # mmcv's setup.py compiles CUDA whenever torch sees a GPU; this build was chosen to be CPU-only.
      CUDA_VISIBLE_DEVICES="" FORCE_CUDA=0 MMCV_WITH_OPS=1 MAX_JOBS="$jobs" \
        "${PIP[@]}" wheel -q --no-build-isolation --no-deps "$build/mmcv-$MMCV_VERSION" -w "$build/dist"
    else
      MMCV_WITH_OPS=1 MAX_JOBS="$jobs" \
        "${PIP[@]}" wheel -q --no-build-isolation --no-deps "$build/mmcv-$MMCV_VERSION" -w "$build/dist"
    fi
    log "built mmcv ($device) in $(( $(date +%s) - build_start )) s"
    mkdir -p "$wheel_dir"
    # Copy then rename, so an interrupted run never leaves a truncated wheel in the cache.
    built=$(ls "$build"/dist/mmcv-*.whl)
    cp "$built" "$wheel_dir/.partial.whl"
    mv "$wheel_dir/.partial.whl" "$wheel_dir/$(basename "$built")"
    wheel="$wheel_dir/$(basename "$built")"
  fi
  "${PIP[@]}" install -q --no-deps --force-reinstall "$wheel"
  echo "$key" >"$MMCV_MARK"
fi

log "installing requirements.txt and soma (editable)"
"${PIP[@]}" install -q "${PIP_SOURCE[@]}" "${HOLD_TORCH[@]}" "${REQUIREMENTS[@]}"
"${PIP[@]}" install -q "${PIP_SOURCE[@]}" --no-deps --no-build-isolation -e "$ROOT"
# cityscapesscripts pulls the obsolete `typing` backport, which shadows the stdlib module.
if "${PIP[@]}" show typing >/dev/null 2>&1; then
  "${PIP[@]}" uninstall -q -y typing
fi

verify_imports || die "the environment is incomplete (see the failing imports above); fix and re-run tools/setup.sh"
verify_gpu_ops || die "the GPU check failed (see above)"
wanted_stamp > "$STAMP"
log "done in $(( $(date +%s) - start )) s; activate with: source $VENV/bin/activate"
