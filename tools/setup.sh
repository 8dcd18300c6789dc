#!/usr/bin/env bash
# Set up SoMA's Python environment on a fresh machine (CPU or GPU), idempotently.
#
#   bash tools/setup.sh            # creates .venv, installs requirements.txt and `pip install -e .`
#
# mmcv 2.1.0 (needed by mmseg 1.2.2 / mmdet 3.3.0) has no wheel on PyPI, so it is built from source with
# its ops once and the wheel is cached outside the repository, keyed by Python and torch version:
#   ${SOMA_CACHE_DIR:-~/.cache/soma}/wheels/
# A second run finds the environment stamped healthy and only re-checks the imports (seconds).
#
# Environment: SOMA_VENV (default <repo>/.venv), SOMA_CACHE_DIR, PYTHON (default python3.11 or python3),
# MAX_JOBS (parallel compile jobs for mmcv, default: number of cores).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SOMA_VENV:-$ROOT/.venv}"
CACHE="${SOMA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/soma}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
MMCV_VERSION=2.1.0
STAMP="$VENV/.soma-setup-ok"

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# The stamp records what was installed; any change to these inputs forces a re-install.
wanted_stamp() {
  cat "$ROOT/requirements.txt" "$ROOT/pyproject.toml" "$ROOT/tools/setup.sh" | sha256sum | cut -d' ' -f1
}

verify_imports() {
  "$VENV/bin/python" - <<'PY'
import importlib, sys
failed = []
for name in ("torch", "torchvision", "timm", "mmengine", "mmcv.ops", "mmseg.models", "mmdet.models", "soma"):
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

start=$(date +%s)
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(wanted_stamp)" ]] && verify_imports; then
  log "environment at $VENV is up to date ($(( $(date +%s) - start )) s)"
  exit 0
fi

# From here on the environment is not healthy until the final check writes the stamp again.
rm -f "$STAMP"
[[ -x "$VENV/bin/python" ]] || { log "creating virtualenv $VENV with $PYTHON"; "$PYTHON" -m venv "$VENV"; }
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

log "installing torch, torchvision and build tools"
"${PIP[@]}" install -q "torch==2.14.1" "torchvision==0.29.1" "setuptools>=77.0.3,<81" wheel ninja "numpy>=1.26,<2.4"

torch_version=$("$VENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])')
py_tag=$("$VENV/bin/python" -c 'import sys; print(f"cp{sys.version_info.major}{sys.version_info.minor}")')
wheel_dir="$CACHE/wheels/mmcv-$MMCV_VERSION-torch$torch_version-$py_tag"
if "$VENV/bin/python" -c "import mmcv, mmcv.ops, sys; sys.exit(mmcv.__version__ != '$MMCV_VERSION')" 2>/dev/null; then
  log "mmcv $MMCV_VERSION with ops already installed"
else
  wheel=$(ls "$wheel_dir"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n 1 || true)
  if [[ -z "$wheel" ]]; then
    log "building mmcv $MMCV_VERSION with ops from source (about 9 min on 2 cores; cached in $wheel_dir)"
    build=$(mktemp -d)
    trap 'rm -rf "$build"' EXIT
    "${PIP[@]}" download -q --no-deps --no-binary :all: "mmcv==$MMCV_VERSION" -d "$build"
    tar -xzf "$build"/mmcv-"$MMCV_VERSION".tar.gz -C "$build"
    # torch >= 2.10 headers need C++20; mmcv 2.1.0 hard-codes -std=c++17.
    sed -i "s/'-std=c++17'/'-std=c++20'/g" "$build/mmcv-$MMCV_VERSION/setup.py"
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
      "${PIP[@]}" wheel --no-build-isolation --no-deps "$build/mmcv-$MMCV_VERSION" -w "$build/dist"
    mkdir -p "$wheel_dir"
    # Copy then rename, so an interrupted run never leaves a truncated wheel in the cache.
    built=$(ls "$build"/dist/mmcv-*.whl)
    cp "$built" "$wheel_dir/.partial.whl"
    mv "$wheel_dir/.partial.whl" "$wheel_dir/$(basename "$built")"
    wheel="$wheel_dir/$(basename "$built")"
  else
    log "reusing cached mmcv wheel $wheel"
  fi
  "${PIP[@]}" install -q --no-deps --force-reinstall "$wheel"
fi

log "installing requirements.txt and soma (editable)"
"${PIP[@]}" install -q -r "$ROOT/requirements.txt"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e "$ROOT"
# cityscapesscripts pulls the obsolete `typing` backport, which shadows the stdlib module.
if "$VENV/bin/python" -m pip show typing >/dev/null 2>&1; then
  "${PIP[@]}" uninstall -q -y typing
fi

verify_imports || die "the environment is incomplete (see the failing imports above); fix and re-run tools/setup.sh"
wanted_stamp > "$STAMP"
log "done in $(( $(date +%s) - start )) s; activate with: source $VENV/bin/activate"
