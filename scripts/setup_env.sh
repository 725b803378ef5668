#!/usr/bin/env bash
# Build the project's virtualenv from nothing, idempotently.
#
#   bash scripts/setup_env.sh          # or: make venv
#
# Installs torch / torchvision of the chosen STACK, mmengine 0.10.7, mmcv 2.1.0
# (built from the registry's source package with its ops), mmdet 3.3.0,
# mmsegmentation 1.2.2, timm, then this package in editable mode with its
# tests and deploy extras (mmdeploy 1.3.1 with --no-deps).
#
# STACK=latest (default): torch 2.15.0 / torchvision 0.29.2, the newest
#   release (torchvision 0.29.2 declares torch>=2.14 and its ops run on 2.15).
#   mmcv 2.1.0 has no wheel for it: its setup.py hard-codes -std=c++14/17
#   while torch >= 2.10 headers need C++20, so the flags are patched; torch
#   >= 2.14 needs setuptools >= 77.0.3.
# STACK=lower: torch 2.1.2 / torchvision 0.16.2 with numpy < 2, the stack of
#   mmcv 2.1.0's prebuilt wheels that most MMDetection 3.3 users run (here the
#   registry's CUDA wheel of torch, which imports on a CPU machine). mmcv keeps
#   its own C++17 flags.
# Both build mmcv with setuptools < 81 (its setup.py imports pkg_resources)
# and --no-build-isolation, and cache the wheel per torch version in
# $MMCV_WHEEL_DIR/torch-<version> for reuse.
#
# Environment:
#   STACK           latest | lower             (default: latest)
#   VENV            virtualenv path            (default: .venv, .venv-lower)
#   PYTHON          interpreter for the venv   (default: python3.11, else python3)
#   MMCV_WHEEL_DIR  cached mmcv wheel folder   (default: ~/.cache/vanillanet_mm/wheels)
#   MAX_JOBS        parallel compile jobs      (default: nproc)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK="${STACK:-latest}"
case "$STACK" in
  latest) TORCH_PINS=("torch==2.15.0" "torchvision==0.29.2")
          BUILD_PINS=("setuptools>=77.0.3,<81"); CXX20=1
          VENV="${VENV:-$ROOT/.venv}" ;;
  lower)  TORCH_PINS=("torch==2.1.2" "torchvision==0.16.2" "numpy<2")
          BUILD_PINS=("setuptools<81"); CXX20=0
          VENV="${VENV:-$ROOT/.venv-lower}" ;;
  *) echo "[setup_env] unknown STACK=$STACK: use latest or lower" >&2; exit 2 ;;
esac
# absolute: the mmcv build runs its pip from the unpacked source folder
mkdir -p "$(dirname "$VENV")"
VENV="$(cd "$(dirname "$VENV")" && pwd)/$(basename "$VENV")"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
TORCH_VERSION="${TORCH_PINS[0]#torch==}"
# The ops' compile flags. CFLAGS replaces Python's own (-O3 -g ...) in the
# torch extension build, so the optimisation level is set here: without it
# mmcv's CPU ops (nms, roi_align) ran unoptimised. -g0:
# debug info for torch's templates made each file compile about 2.7x
# slower. -O2 compiles as fast as -O0 (the time goes to parsing torch's
# headers). The cache folder names the flags, so a wheel built with other
# flags is not reused.
MMCV_CFLAGS="-O2 -DNDEBUG -g0"
MMCV_WHEEL_DIR="${MMCV_WHEEL_DIR:-$HOME/.cache/vanillanet_mm/wheels}/torch-$TORCH_VERSION-O2"
MMCV_VERSION=2.1.0
MMDEPLOY_VERSION=1.3.1
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
STAMP="$VENV/.vanillanet_mm.stamp"

say() { printf '[setup_env] %s\n' "$*"; }

# What the stamp certifies: this script and setup.py, unchanged.
want_stamp="$( (echo "$STACK"; cat "$0" "$ROOT/setup.py") | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want_stamp" ]] \
   && "$VENV/bin/python" -c "import mmcv.ops, mmdet, mmseg, vanillanet_mm, mmdeploy" 2>/dev/null; then
  say "environment in $VENV is up to date"
  exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating virtualenv $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
# The stack's pins hold for every later install, so no dependency moves them.
# They replace any pip-configured constraint file (PIP_CONSTRAINT overrides
# pip.conf's), e.g. one that caps torch below the stack's release.
PINS="$VENV/stack-constraints.txt"
printf '%s\n' "${TORCH_PINS[@]}" >"$PINS"
export PIP_CONSTRAINT="$PINS"

say "installing ${TORCH_PINS[*]} and build tools ($STACK stack)"
"${PIP[@]}" install -q "${BUILD_PINS[@]}" wheel ninja "${TORCH_PINS[@]}"

mmcv_wheel() { ls "$MMCV_WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n1; }

if [[ -z "$(mmcv_wheel)" ]]; then
  mkdir -p "$MMCV_WHEEL_DIR"
  work="$(mktemp -d)"
  log="$MMCV_WHEEL_DIR/mmcv-$MMCV_VERSION-build.log"
  say "no cached mmcv $MMCV_VERSION wheel in $MMCV_WHEEL_DIR: building it from source"
  say "this takes about 8 min on 2 CPU cores; log: $log"
  "${PIP[@]}" download -q --no-deps --no-binary mmcv --no-build-isolation \
    "mmcv==$MMCV_VERSION" -d "$work" >"$log" 2>&1 \
    || { say "download of the mmcv sdist failed; see $log"; exit 1; }
  tar -xzf "$work"/mmcv-"$MMCV_VERSION".tar.gz -C "$work"
  src="$work/mmcv-$MMCV_VERSION"
  # torch >= 2.10 headers need C++20.
  if [[ "$CXX20" == 1 ]]; then
    sed -i -E 's/-std=c\+\+1[47]/-std=c++20/g' "$src/setup.py"
  fi
  (
    cd "$src"
    CFLAGS="$MMCV_CFLAGS" MMCV_WITH_OPS=1 "${PIP[@]}" wheel -v --no-deps --no-build-isolation -w "$work/dist" . >>"$log" 2>&1
  ) &
  build_pid=$!
  start=$(date +%s)
  while kill -0 "$build_pid" 2>/dev/null; do
    sleep 30
    step="$(grep -aoE '\[[0-9]+/[0-9]+\]' "$log" | tail -n1 || true)"
    say "building mmcv: $(( ($(date +%s) - start) / 60 )) min elapsed, compile step ${step:-(preparing)}"
  done
  if ! wait "$build_pid"; then
    say "mmcv build FAILED; the full log is $log"
    exit 1
  fi
  tmp="$(mktemp -p "$MMCV_WHEEL_DIR" .partial.XXXXXX)"
  whl="$(ls "$work"/dist/mmcv-*.whl)"
  cp "$whl" "$tmp" && chmod 644 "$tmp" && mv "$tmp" "$MMCV_WHEEL_DIR/$(basename "$whl")"
  rm -rf "$work"
  say "mmcv wheel cached: $(mmcv_wheel)"
fi

say "installing mmcv (cached wheel), mmengine, mmdet, mmsegmentation, timm"
"${PIP[@]}" install -q "$(mmcv_wheel)"
say "installing vanillanet_mm (editable) and its dependencies"
"${PIP[@]}" install -q -e "$ROOT[tests,deploy]"
# tools/deployment/deploy.py: mmdeploy without its pins (protobuf<=3.20.2
# would downgrade protobuf and with it onnx); the deploy extra above brings
# what it imports.
say "installing mmdeploy $MMDEPLOY_VERSION (--no-deps)"
"${PIP[@]}" install -q --no-deps "mmdeploy==$MMDEPLOY_VERSION"
"$VENV/bin/python" -c "import mmcv.ops, mmdet, mmseg, vanillanet_mm, mmdeploy.apis" \
  || { say "import check failed"; exit 1; }
echo "$want_stamp" >"$STAMP"
say "done: activate with 'source $VENV/bin/activate'"
