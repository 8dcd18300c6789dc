#!/usr/bin/env bash
# Build an mmcv 2.1.0 wheel (with its ops) for another machine: another Python, another torch, its GPU
# architectures; on a machine without a GPU and without a system CUDA toolkit (a cluster's login node, a CI box).
#
#   bash tools/build_mmcv_wheel.sh OUT_DIR --python 3.12 --torch 2.11.0 --cuda-arch 9.0   # CUDA ops for sm_90
#   bash tools/build_mmcv_wheel.sh OUT_DIR --python 3.12 --torch 2.11.0 --cpu             # CPU ops only
#
# The wheel lands in OUT_DIR/mmcv/<key>/, key = mmcv-2.1.0-torch<ver>-cp<py>-<cpu | cu<cuda>-arch<list>>, the
# same key tools/setup.sh computes on the target; BUILD.txt next to it records what it was built against.
# `tools/setup.sh --wheelhouse OUT_DIR` installs it there without compiling when the key matches.
#
# How: a build virtualenv (cached in ${SOMA_CACHE_DIR:-~/.cache/soma}/build-envs/<cp>-torch<ver>) with the
# target's Python and torch from the package index (the index's default build of that version: for torch 2.11.0
# on x86-64 Linux that is +cu130); for CUDA ops, the CUDA compiler from the index too: nvidia-cuda-nvcc,
# nvidia-nvvm, nvidia-cuda-crt and nvidia-cuda-cccl of torch's CUDA minor version (mixing minors fails:
# cicc 13.5 writes PTX that ptxas 13.0 rejects), laid out as a CUDA_HOME with torch's nvidia-* headers and
# libraries. mmcv's setup.py gets the C++20 patch that torch >= 2.10's headers need.
# Measured (2 cores, no GPU): CPU ops about 9 min; CUDA ops for one architecture: see docs/benchmarks.md.
#
# Options: --python MAJOR.MINOR (an interpreter python<ver> on PATH or under pyenv; or PYTHON=/path),
# --torch VERSION, --cuda-arch LIST (TORCH_CUDA_ARCH_LIST syntax, e.g. "8.0;9.0") or --cpu, --jobs N (default:
# all cores), --mmcv-src TARBALL (the patched source from tools/make_wheelhouse.sh; default: download it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MMCV_VERSION=2.1.0
CACHE="${SOMA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/soma}"
log() { printf '[build_mmcv] %s\n' "$*"; }
die() { printf '[build_mmcv] ERROR: %s\n' "$*" >&2; exit 1; }

OUT=""
TARGET_PYTHON=""
TORCH=""
ARCHS=""
CPU=0
JOBS="${MAX_JOBS:-$(nproc)}"
SRC=""
while (($#)); do
  case "$1" in
    --python) [[ $# -ge 2 ]] || die "--python needs a version such as 3.12"; TARGET_PYTHON="$2"; shift ;;
    --torch) [[ $# -ge 2 ]] || die "--torch needs a version such as 2.11.0"; TORCH="$2"; shift ;;
    --cuda-arch) [[ $# -ge 2 ]] || die "--cuda-arch needs architectures such as 9.0 or '8.0;9.0'"; ARCHS="$2"; shift ;;
    --cpu) CPU=1 ;;
    --jobs) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || die "--jobs needs a number"; JOBS="$2"; shift ;;
    --mmcv-src) [[ $# -ge 2 && -f "$2" ]] || die "--mmcv-src needs an existing mmcv-$MMCV_VERSION.tar.gz"; SRC="$2"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option '$1' (see: bash tools/build_mmcv_wheel.sh --help)" ;;
    *) [[ -z "$OUT" ]] || die "one OUT_DIR only, got '$OUT' and '$1'"; OUT="$1" ;;
  esac
  shift
done
usage="bash tools/build_mmcv_wheel.sh OUT_DIR --python 3.12 --torch 2.11.0 (--cuda-arch 9.0 | --cpu)"
[[ -n "$OUT" && -n "$TARGET_PYTHON" && -n "$TORCH" ]] || die "usage: $usage"
[[ "$TARGET_PYTHON" =~ ^3\.[0-9]+$ ]] || die "--python takes MAJOR.MINOR, e.g. 3.12; got '$TARGET_PYTHON'"
[[ "$TORCH" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "--torch takes a release such as 2.11.0; got '$TORCH'"
[[ "$CPU" == 1 || -n "$ARCHS" ]] || die "say what to build: --cuda-arch LIST (e.g. 9.0 for H100/H200) or --cpu"
[[ "$CPU" == 0 || -z "$ARCHS" ]] || die "--cpu and --cuda-arch exclude each other"
[[ -z "$ARCHS" || "$ARCHS" =~ ^[0-9]+\.[0-9]+(\+PTX)?([\;\ ][0-9]+\.[0-9]+(\+PTX)?)*$ ]] ||
  die "--cuda-arch takes TORCH_CUDA_ARCH_LIST syntax such as 9.0 or '8.0;9.0+PTX'; got '$ARCHS'"

PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  PYTHON=$(command -v "python$TARGET_PYTHON" || true)
  # pyenv's shims exist for every installed version but fail unless that version is selected.
  [[ -n "$PYTHON" ]] && "$PYTHON" -c pass 2>/dev/null || PYTHON=""
  [[ -n "$PYTHON" ]] || PYTHON=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$TARGET_PYTHON".*/bin/python 2>/dev/null |
                                  sort -V | tail -n 1 || true)
fi
[[ -n "$PYTHON" && -x "$PYTHON" ]] ||
  die "no Python $TARGET_PYTHON interpreter found (python$TARGET_PYTHON on PATH or under pyenv): install one or set PYTHON=/path/to/python$TARGET_PYTHON"
seen=$("$PYTHON" -c 'import sys; print(f"{sys.version_info.major}.{sys.version_info.minor}")')
[[ "$seen" == "$TARGET_PYTHON" ]] || die "PYTHON=$PYTHON is Python $seen, not $TARGET_PYTHON"
py_tag="cp${TARGET_PYTHON/./}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
start=$(date +%s)

# A wheel built before for the same Python, torch and device (in OUT or the cache) is reused, not rebuilt.
arch_tag="arch$(tr -c 'A-Za-z0-9.+\n' '_' <<<"$ARCHS")"  # as tools/setup.sh spells the architectures in its key
device_glob=cpu
[[ "$CPU" == 1 ]] || device_glob="cu*-$arch_tag"
for done in "$OUT"/mmcv/mmcv-"$MMCV_VERSION-torch$TORCH-$py_tag"-$device_glob \
            "$CACHE"/wheels/mmcv-"$MMCV_VERSION-torch$TORCH-$py_tag"-$device_glob; do
  if [[ -f "$done/BUILD.txt" ]] && ls "$done"/mmcv-*.whl >/dev/null 2>&1; then
    if [[ "$done" != "$OUT/mmcv/$(basename "$done")" ]]; then
      rm -rf "$OUT/mmcv/$(basename "$done")"
      mkdir -p "$OUT/mmcv"
      cp -r "$done" "$OUT/mmcv/"
    fi
    log "reusing the wheel built before: $OUT/mmcv/$(basename "$done") ($(sed -n 's/^built=//p' "$done/BUILD.txt"))"
    exit 0
  fi
done

# ------------------------------------------------------------------------------------------ the build virtualenv
ENV="$CACHE/build-envs/$py_tag-torch$TORCH"
PY="$ENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check -q)
if ! "$PY" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH')" 2>/dev/null; then
  log "build environment $ENV: Python $TARGET_PYTHON, torch $TORCH from the package index (several GB once)"
  rm -rf "$ENV"
  "$PYTHON" -m venv "$ENV"
  "${PIP[@]}" install "torch==$TORCH" "setuptools>=77.0.3,<81" wheel ninja numpy
fi
read -r torch_full torch_cuda < <("$PY" -c 'import torch; print(torch.__version__, torch.version.cuda or "none")')

if [[ "$CPU" == 1 ]]; then
  device=cpu
  build_env=(CUDA_VISIBLE_DEVICES="" FORCE_CUDA=0)
else
  [[ "$torch_cuda" != none ]] || die "torch $torch_full from the index is a CPU-only build: CUDA ops need a CUDA build"
  cuda_major=${torch_cuda%%.*}
  suffix=""
  (( cuda_major >= 13 )) || suffix="-cu$cuda_major"  # CUDA 12's wheels carry the major in their names
  site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  nvcc_bin=$(ls "$site"/nvidia/cu"$cuda_major"/bin/nvcc "$site"/nvidia/cuda_nvcc/bin/nvcc 2>/dev/null | head -n 1 || true)
  if [[ -z "$nvcc_bin" ]]; then
    log "CUDA $torch_cuda compiler from the package index (nvidia-cuda-nvcc, nvvm, crt, cccl $torch_cuda.*)"
    "${PIP[@]}" install --no-deps "nvidia-cuda-nvcc$suffix==$torch_cuda.*" "nvidia-nvvm$suffix==$torch_cuda.*" \
      "nvidia-cuda-crt$suffix==$torch_cuda.*" "nvidia-cuda-cccl$suffix==$torch_cuda.*" ||
      die "could not install the CUDA $torch_cuda compiler wheels (see above)"
    nvcc_bin=$(ls "$site"/nvidia/cu"$cuda_major"/bin/nvcc "$site"/nvidia/cuda_nvcc/bin/nvcc 2>/dev/null | head -n 1 || true)
    [[ -n "$nvcc_bin" ]] || die "nvidia-cuda-nvcc installed, but no nvcc under $site/nvidia"
  fi
  toolkit="$(dirname "$(dirname "$nvcc_bin")")"
  # CUDA_HOME: one folder with bin/ (nvcc, ptxas), nvvm/, include/ and lib64/, as torch's cpp_extension expects.
  CUDA_HOME="$ENV/cuda-home"
  rm -rf "$CUDA_HOME"
  mkdir -p "$CUDA_HOME/lib64"
  ln -s "$toolkit/bin" "$CUDA_HOME/bin"
  ln -s "$toolkit/nvvm" "$CUDA_HOME/nvvm"
  ln -s "$toolkit/include" "$CUDA_HOME/include"
  for lib in "$toolkit"/lib/*; do ln -s "$lib" "$CUDA_HOME/lib64/"; done
  cudart=$(ls "$toolkit"/lib/libcudart.so.* | head -n 1)
  ln -sf "$cudart" "$CUDA_HOME/lib64/libcudart.so"  # only the versioned name is shipped; the linker wants -lcudart
  nvcc_cuda=$("$CUDA_HOME/bin/nvcc" --version | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p')
  [[ "$nvcc_cuda" == "$torch_cuda" ]] || die "nvcc is CUDA $nvcc_cuda but torch $torch_full was built with $torch_cuda"
  # Headers of torch's other nvidia-* wheels (cudnn, nccl, ...), which torch's CUDA headers may include.
  nvidia_includes=$(ls -d "$site"/nvidia/*/include 2>/dev/null | paste -sd: || true)
  device="cu${torch_cuda//./}-$arch_tag"
  build_env=(CUDA_VISIBLE_DEVICES="" FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$ARCHS" CUDA_HOME="$CUDA_HOME"
             PATH="$CUDA_HOME/bin:$PATH" CPATH="${CPATH:+$CPATH:}$nvidia_includes")
fi
key="mmcv-$MMCV_VERSION-torch$TORCH-$py_tag-$device"
dest="$OUT/mmcv/$key"

# ------------------------------------------------------------------------------------------------- the build
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ -n "$SRC" ]]; then
  cp "$SRC" "$work/"
else
  # pip prepares the sdist's metadata: in this environment, whose setuptools < 81 has the pkg_resources that
  # mmcv's setup.py imports (an isolated build environment would take the newest setuptools).
  "${PIP[@]}" download --no-deps --no-build-isolation --no-binary :all: "mmcv==$MMCV_VERSION" -d "$work"
fi
tar -xzf "$work/mmcv-$MMCV_VERSION.tar.gz" -C "$work"
sed -i "s/'-std=c++17'/'-std=c++20'/g" "$work/mmcv-$MMCV_VERSION/setup.py"
log "building $key on $JOBS jobs (log: $work/build.log until it ends)"
build_start=$(date +%s)
if ! env "${build_env[@]}" MMCV_WITH_OPS=1 MAX_JOBS="$JOBS" \
    "$PY" -m pip --disable-pip-version-check wheel --no-build-isolation --no-deps "$work/mmcv-$MMCV_VERSION" \
    -w "$work/dist" >"$work/build.log" 2>&1; then
  mkdir -p "$OUT/mmcv"
  cp "$work/build.log" "$OUT/mmcv/$key.failed.log"
  die "the build failed; its log: $OUT/mmcv/$key.failed.log"
fi
seconds=$(( $(date +%s) - build_start ))
built=$(ls "$work"/dist/mmcv-*.whl)

# Check the wheel before it is published: its compiled extension loads next to this torch and reports its CUDA
# (loaded on its own: importing the mmcv package needs OpenCV, which the build environment does not have).
mkdir "$work/check"
(cd "$work/check" && "$PY" -m zipfile -e "$built" .)
compiled=$("$PY" - "$work/check" <<'PY'
import glob, importlib.util, sys
import torch  # noqa: F401  (the extension links against torch's libraries)
path, = glob.glob(f"{sys.argv[1]}/mmcv/_ext*.so")
spec = importlib.util.spec_from_file_location("mmcv._ext", path)
extension = importlib.util.module_from_spec(spec)
spec.loader.exec_module(extension)
print(extension.get_compiling_cuda_version())
PY
) || die "the built wheel's extension (mmcv/_ext) does not load next to torch $torch_full"
if [[ "$CPU" == 1 ]]; then
  [[ "$compiled" == "not available" ]] || die "a CPU build reports CUDA $compiled"
else
  [[ "$compiled" == "$torch_cuda" ]] || die "the CUDA build reports CUDA '$compiled', expected $torch_cuda"
fi

# Publish atomically: a cut build leaves no folder that setup.sh would take for a wheel.
rm -rf "$dest" "$dest.partial"
mkdir -p "$dest.partial"
cp "$built" "$dest.partial/"
cat >"$dest.partial/BUILD.txt" <<EOF
key=$key
python=$TARGET_PYTHON
torch=$torch_full
cuda=$([[ $CPU == 1 ]] && echo none || echo "$torch_cuda")
archs=$([[ $CPU == 1 ]] && echo none || echo "$ARCHS")
mmcv_ops_cuda=$compiled
build_seconds=$seconds
jobs=$JOBS
built=$(date -u +%FT%TZ) on $(uname -m), $(nproc) cores
EOF
mv "$dest.partial" "$dest"
# Also into the cache tools/setup.sh reads, for this machine's own set-ups and later wheelhouses.
if [[ "$CACHE/wheels/$key" != "$dest" ]]; then
  rm -rf "$CACHE/wheels/$key.partial" && mkdir -p "$CACHE/wheels"
  cp -r "$dest" "$CACHE/wheels/$key.partial" && rm -rf "$CACHE/wheels/$key" && mv "$CACHE/wheels/$key.partial" "$CACHE/wheels/$key"
fi
log "built $dest/$(basename "$built") ($(du -h "$built" | cut -f1)) in $seconds s; $(( $(date +%s) - start )) s in all"
