#!/usr/bin/env bash
# Collect, on a machine with internet, everything tools/setup.sh needs to install SoMA offline.
#
#   bash tools/make_wheelhouse.sh DIR [--python 3.12] [--platform TAG]... [--system-torch] [--skip NAME,...]
#                                     [--no-hf] [--mmcv cpu|ARCHS --torch VERSION]
#   bash tools/make_wheelhouse.sh DIR --profile gpu-check     # the GPU check's wheelhouse (see below)
#   # then, on the offline machine (same Python version and platform):
#   bash tools/setup.sh --wheelhouse DIR [--system-torch] [--no-hf]
#
# DIR receives a wheel of every package of requirements.txt (and requirements-hf.txt unless --no-hf) and their
# dependencies, for the target Python (default: the one tools/setup.sh would use here) and platform (default:
# x86-64 Linux, glibc >= 2.28, with the older manylinux tags it accepts), the build tools (setuptools, wheel,
# ninja) and, in DIR/src, mmcv's source with the C++20 patch applied (mmcv 2.1.0 has no wheels on PyPI).
#
# --mmcv cpu|ARCHS --torch VERSION: also a built mmcv wheel in DIR/mmcv/<key>/ (tools/build_mmcv_wheel.sh: built
# here, without a GPU, against that torch release and the target Python; ARCHS in TORCH_CUDA_ARCH_LIST syntax,
# e.g. 9.0, gives CUDA ops with a CUDA compiler from the package index). setup.sh installs it on the target
# without compiling when Python, torch, CUDA and architectures match; otherwise it builds from DIR/src there.
# A wheel already built for the same key (in DIR or in the cache) is reused. --mmcv none: no built wheel.
#
# --system-torch: leave out torch, torchvision and their dependencies (the CUDA ones are about 6 GB), for a
# machine that keeps its own torch. The dependency resolution then sees stand-in torch/torchvision packages
# without dependencies, so nothing that only torch needs is collected; the stand-ins are not kept.
# --skip NAME,...: packages the target already has (e.g. numpy,pillow,scipy,opencv-python): their wheels, and
# those of dependencies nothing else needs, are left out, to fit a size limit; the offline install then fails,
# naming the package, if the target lacks one of them. (opencv-python is met by an installed
# opencv-python-headless: setup.sh records a stand-in.)
# --no-hf: leave out the HF extra (peft, transformers and what only they need).
# --profile gpu-check: the lent GPU machine of docs/benchmarks.md (Python 3.12 with torch 2.11.0+cu130, numpy,
# scipy, pillow, matplotlib, opencv-python-headless, timm, transformers and peft installed; an H200, sm_90):
# --python 3.12 --system-torch --no-hf --mmcv 9.0 --torch 2.11.0 --skip numpy,scipy,pillow,matplotlib,
# opencv-python and the dependencies of transformers/timm it has (huggingface-hub, safetensors, pyyaml, regex,
# tqdm, packaging, filelock, fsspec); options after it override. Its size is in docs/benchmarks.md; the CUDA
# build of mmcv takes most of the time, once.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MMCV_VERSION=2.1.0
log() { printf '[wheelhouse] %s\n' "$*"; }
die() { printf '[wheelhouse] ERROR: %s\n' "$*" >&2; exit 1; }

DIR=""
TARGET_PYTHON=""
PLATFORMS=()
SYSTEM_TORCH=0
SKIP=""
WITH_HF=1
MMCV=""
TORCH=""
while (($#)); do
  case "$1" in
    --profile)
      [[ $# -ge 2 ]] || die "--profile needs a name: gpu-check"
      case "$2" in
        # What the lent machine has: torch's and transformers'/timm's dependencies (hub, safetensors, ...) too.
        gpu-check) TARGET_PYTHON=3.12; SYSTEM_TORCH=1; WITH_HF=0
                   SKIP="$SKIP,numpy,scipy,pillow,matplotlib,opencv-python,huggingface-hub,safetensors,pyyaml,regex"
                   SKIP="$SKIP,tqdm,packaging,filelock,fsspec"
                   MMCV=9.0; TORCH=2.11.0 ;;
        *) die "unknown profile '$2' (known: gpu-check)" ;;
      esac
      shift ;;
    --no-hf) WITH_HF=0 ;;
    --mmcv) [[ $# -ge 2 ]] || die "--mmcv needs 'cpu', CUDA architectures such as 9.0, or 'none'"; MMCV="$2"; shift ;;
    --torch) [[ $# -ge 2 ]] || die "--torch needs a version such as 2.11.0"; TORCH="$2"; shift ;;
    --python) [[ $# -ge 2 ]] || die "--python needs a version such as 3.12"; TARGET_PYTHON="$2"; shift ;;
    --platform) [[ $# -ge 2 ]] || die "--platform needs a wheel platform tag"; PLATFORMS+=("$2"); shift ;;
    --system-torch) SYSTEM_TORCH=1 ;;
    --skip) [[ $# -ge 2 ]] || die "--skip needs package names, comma-separated"; SKIP="$SKIP,$2"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option '$1' (see: bash tools/make_wheelhouse.sh --help)" ;;
    *) [[ -z "$DIR" ]] || die "one DIR only, got '$DIR' and '$1'"; DIR="$1" ;;
  esac
  shift
done
[[ -n "$DIR" ]] || die "usage: bash tools/make_wheelhouse.sh DIR [--profile gpu-check] [--python 3.12] [--platform TAG]... [--system-torch] [--skip NAME,...] [--no-hf] [--mmcv cpu|ARCHS --torch VERSION]"
if [[ -n "$MMCV" && "$MMCV" != none && -z "$TORCH" ]]; then
  [[ "$SYSTEM_TORCH" == 0 ]] || die "--mmcv with --system-torch: say which torch the target has (--torch 2.11.0)"
  TORCH=$(sed -n 's/^torch==\(.*\)/\1/p' "$ROOT/requirements.txt")
fi
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
TARGET_PYTHON="${TARGET_PYTHON:-$("$PYTHON" -c 'import sys; print(f"{sys.version_info.major}.{sys.version_info.minor}")')}"
[[ "$TARGET_PYTHON" =~ ^3\.[0-9]+$ ]] || die "--python takes MAJOR.MINOR, e.g. 3.12; got '$TARGET_PYTHON'"
((${#PLATFORMS[@]})) || PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64
                                   manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_5_x86_64 manylinux1_x86_64)
abi="cp${TARGET_PYTHON/./}"
mkdir -p "$DIR/src"
DIR="$(cd "$DIR" && pwd)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
PIP=("$PYTHON" -m pip --disable-pip-version-check)
start=$(date +%s)

log "mmcv $MMCV_VERSION source, patched for C++20 (torch >= 2.10 headers), into $DIR/src"
# pip prepares the sdist's metadata in an isolated build environment: setuptools >= 81 lacks the pkg_resources
# that mmcv's setup.py imports.
echo "setuptools<81" >"$work/build-constraints.txt"
PIP_CONSTRAINT="$work/build-constraints.txt" \
  "${PIP[@]}" download -q --no-deps --no-binary :all: "mmcv==$MMCV_VERSION" -d "$work"
tar -xzf "$work/mmcv-$MMCV_VERSION.tar.gz" -C "$work"
sed -i "s/'-std=c++17'/'-std=c++20'/g" "$work/mmcv-$MMCV_VERSION/setup.py"
tar -czf "$DIR/src/mmcv-$MMCV_VERSION.tar.gz" -C "$work" "mmcv-$MMCV_VERSION"

# What to collect: requirements.txt without mmcv (source only), mmcv's own runtime requirements, build tools.
requirements="$work/requirements.txt"
grep -vE "^mmcv([=<>!~ ;]|$)" "$ROOT/requirements.txt" >"$requirements"
[[ "$WITH_HF" == 0 ]] || cat "$ROOT/requirements-hf.txt" >>"$requirements"
grep -vE '^\s*(#|$)' "$work/mmcv-$MMCV_VERSION/requirements/runtime.txt" >>"$requirements"
printf '%s\n' "setuptools>=77.0.3,<81" wheel ninja >>"$requirements"
find_links=()
if [[ "$SYSTEM_TORCH" == 1 ]]; then
  mkdir "$work/stand-ins"
  for name in torch torchvision; do
    version=$(sed -n "s/^$name==\(.*\)/\1/p" "$ROOT/requirements.txt")+soma.standin
    "$PYTHON" - "$work/stand-ins" "$name" "$version" <<'PY'
import sys, zipfile
folder, name, version = sys.argv[1:]
info = f"{name}-{version}.dist-info"
with zipfile.ZipFile(f"{folder}/{name}-{version}-py3-none-any.whl", "w") as wheel:
    wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: soma\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    wheel.writestr(f"{info}/RECORD", "")
PY
    sed -i "s/^$name==.*/$name==$version/" "$requirements"
  done
  find_links=(--find-links "$work/stand-ins")
fi

log "wheels for Python $TARGET_PYTHON on ${PLATFORMS[0]}$([[ $SYSTEM_TORCH == 1 ]] && echo ', without torch') into $DIR"
platform_args=()
for platform in "${PLATFORMS[@]}"; do platform_args+=(--platform "$platform"); done
"${PIP[@]}" download -q -d "$DIR" --only-binary :all: --python-version "$TARGET_PYTHON" --implementation cp \
  --abi "$abi" --abi abi3 --abi none "${platform_args[@]}" "${find_links[@]}" -r "$requirements"
rm -f "$DIR"/torch-*+soma.standin-*.whl "$DIR"/torchvision-*+soma.standin-*.whl
if [[ -n "$SKIP" ]]; then
  # Leave out the skipped packages and every wheel that only they need: walk the dependencies of the wheels in DIR
  # from the requirements, for the target Python on Linux x86-64, without entering a skipped package.
  "$PYTHON" - "$DIR" "$requirements" "$TARGET_PYTHON" "${SKIP#,}" <<'PY'
import re, sys, zipfile
from email.parser import Parser
from pathlib import Path
try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name
folder, requirements, python, skip = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
skipped = {canonicalize_name(n) for n in skip.split(",") if n}
environment = {"python_version": python, "python_full_version": python + ".0", "sys_platform": "linux",
               "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
               "implementation_name": "cpython", "platform_python_implementation": "CPython"}
wheels, requires = {}, {}
for wheel in folder.glob("*.whl"):
    name = canonicalize_name(wheel.name.split("-")[0])
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
        requires[name] = Parser().parsestr(archive.read(meta).decode()).get_all("Requires-Dist") or []
    wheels[name] = wheel
missing = skipped - set(wheels)
if missing:
    sys.exit(f"[wheelhouse] ERROR: --skip {','.join(sorted(missing))}: no such wheel in {folder}")
todo = [Requirement(line) for line in open(requirements) if line.strip() and not line.lstrip().startswith("#")]
kept, seen = set(), set()
while todo:
    requirement = todo.pop()
    name = canonicalize_name(requirement.name)
    key = (name, frozenset(requirement.extras))
    if name in skipped or key in seen:
        continue
    seen.add(key)
    kept.add(name)
    for line in requires.get(name, []):
        dependency = Requirement(line)
        if dependency.marker is None or any(dependency.marker.evaluate({**environment, "extra": extra})
                                            for extra in {"", *requirement.extras}):
            todo.append(dependency)
for name in sorted(set(wheels) - kept):
    print(f"[wheelhouse] left out {wheels[name].name}" + (" (--skip)" if name in skipped else " (only skipped packages need it)"))
    wheels[name].unlink()
PY
fi
[[ "$MMCV" != none ]] || MMCV=""
if [[ -n "$MMCV" ]]; then
  arch_args=(--cuda-arch "$MMCV")
  [[ "$MMCV" != cpu ]] || arch_args=(--cpu)
  log "mmcv $MMCV_VERSION wheel for Python $TARGET_PYTHON, torch $TORCH, ${MMCV/cpu/CPU ops} (tools/build_mmcv_wheel.sh)"
  bash "$ROOT/tools/build_mmcv_wheel.sh" "$DIR" --python "$TARGET_PYTHON" --torch "$TORCH" "${arch_args[@]}" \
    --mmcv-src "$DIR/src/mmcv-$MMCV_VERSION.tar.gz"
fi
printf 'python %s, platforms %s, system torch %s, hf %s, left out: %s, mmcv wheels: %s, made %s\n' "$TARGET_PYTHON" \
  "${PLATFORMS[*]}" "$([[ $SYSTEM_TORCH == 1 ]] && echo yes || echo no)" "$([[ $WITH_HF == 1 ]] && echo yes || echo no)" \
  "${SKIP#,}" "$(ls "$DIR/mmcv" 2>/dev/null | grep -v '\.log$' | paste -sd' ' || echo none)" "$(date -u +%FT%TZ)" \
  >"$DIR/WHEELHOUSE.txt"
log "$(ls "$DIR"/*.whl | wc -l) wheels, $(du -sh "$DIR" | cut -f1) in all, in $(( $(date +%s) - start )) s"
log "install offline with: bash tools/setup.sh --wheelhouse $DIR$([[ $SYSTEM_TORCH == 1 ]] && echo ' --system-torch')$([[ $WITH_HF == 0 ]] && echo ' --no-hf')"
