#!/usr/bin/env bash
# Collect, on a machine with internet, everything tools/setup.sh needs to install SoMA offline.
#
#   bash tools/make_wheelhouse.sh DIR [--python 3.12] [--platform TAG]... [--system-torch] [--skip NAME,...]
#   # then, on the offline machine (same Python version and platform):
#   bash tools/setup.sh --wheelhouse DIR [--system-torch]
#
# DIR receives a wheel of every package of requirements.txt and its dependencies, for the target Python
# (default: the one tools/setup.sh would use here) and platform (default: x86-64 Linux, glibc >= 2.28, with
# the older manylinux tags it accepts), the build tools (setuptools, wheel, ninja) and, in DIR/src, mmcv's
# source with the C++20 patch applied (mmcv 2.1.0 has no wheels: setup.sh builds it there, or reuses a
# wheel it cached before).
#
# --system-torch: leave out torch, torchvision and their dependencies (the CUDA ones are about 6 GB), for a
# machine that keeps its own torch. The dependency resolution then sees stand-in torch/torchvision packages
# without dependencies, so nothing that only torch needs is collected; the stand-ins are not kept.
# --skip NAME,...: drop these wheels (packages the target already has, e.g. numpy,pillow,scipy,opencv-python),
# to fit a size limit; the offline install then fails, naming the package, if the target lacks one of them.
# Measured with --system-torch: Python 3.11, 65 wheels, 172 MB (opencv-python 74 MB, scipy 34 MB, numpy 17 MB,
# pillow 7 MB; 36 s); Python 3.12 with --skip opencv-python,scipy,numpy,pillow: 61 wheels, 42 MB.
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
while (($#)); do
  case "$1" in
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
[[ -n "$DIR" ]] || die "usage: bash tools/make_wheelhouse.sh DIR [--python 3.12] [--platform TAG]... [--system-torch] [--skip NAME,...]"
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
for name in ${SKIP//,/ }; do
  # Wheel file names spell the project name with underscores, in any case.
  pattern=$(tr 'A-Z.-' 'a-z__' <<<"$name")
  found=$(cd "$DIR" && ls | awk -F- -v p="$pattern" 'tolower($1) == p && /\.whl$/')
  [[ -n "$found" ]] || die "--skip $name: no such wheel in $DIR"
  (cd "$DIR" && rm -f $found)
  log "left out $found"
done
printf 'python %s, platforms %s, system torch %s, left out: %s, made %s\n' "$TARGET_PYTHON" "${PLATFORMS[*]}" \
  "$([[ $SYSTEM_TORCH == 1 ]] && echo yes || echo no)" "${SKIP#,}" "$(date -u +%FT%TZ)" >"$DIR/WHEELHOUSE.txt"
log "$(ls "$DIR"/*.whl | wc -l) wheels, $(du -sh "$DIR" | cut -f1) in all, in $(( $(date +%s) - start )) s"
log "install offline with: bash tools/setup.sh --wheelhouse $DIR$([[ $SYSTEM_TORCH == 1 ]] && echo ' --system-torch')"
