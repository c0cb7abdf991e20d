#!/usr/bin/env bash
# unetjax against MONAI on a GPU in one sitting (issue 26): the GPU-marked tests, then the train
# step (2D and 3D UNet++), pruned 2D inference and 3D sliding-window inference against MONAI
# eager float32, eager + bfloat16 autocast and torch.compile + autocast, one process at a time
# in ABBA order. Writes into --out one JSON per step (env, gpu_tests, vs_monai, volume), the log
# and gpu_check.md, the table, rebuilt after every step (a run cut short keeps what it measured).
#
#   bash benchmarks/gpu_check.sh --out DIR [--plan plans.json] [--rounds 1|2] [--wheels DIR]
#   bash benchmarks/gpu_check.sh --cpu-dry-run --out DIR    # every step at toy sizes, no install
#   bash benchmarks/gpu_check.sh --fetch-wheels DIR         # here: the wheels the device lacks
#
# The device machine reaches no package index: its image has python3 with a CUDA jax and torch;
# what it lacks (MONAI, and the project's own dependencies its image does not hold) travels as
# wheels fetched here with --fetch-wheels into an ignored folder (.whl), carried with the run and
# installed with --no-index into a private folder. A CUDA jax is installed only where jax sees no
# GPU and an index is reachable (jax[cuda13] for drivers >= 580, else jax[cuda12], at the
# installed jax's version). Exit status: 0 all steps passed, 1 a step failed, 2 a usage mistake.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT="" DRY=0 PLAN="" ROUNDS="" WHEELS="" FETCH=""
usage() { echo "usage: $0 --out DIR [--cpu-dry-run] [--plan plans.json] [--rounds 1|2]" \
  "[--wheels DIR] | --fetch-wheels DIR" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=${2:-}; shift 2 ;;
    --cpu-dry-run) DRY=1; shift ;;
    --plan) PLAN=${2:-}; shift 2 ;;
    --rounds) ROUNDS=${2:-}; shift 2 ;;
    --wheels) WHEELS=${2:-}; shift 2 ;;
    --fetch-wheels) FETCH=${2:-}; shift 2 ;;
    *) echo "gpu_check: unknown argument '$1'" >&2; usage ;;
  esac
done

# What the device image lacks (its list: the device tool's KINDS.md) of what these steps import,
# at this environment's versions: two with compiled parts, for the device's CPython 3.12, and pure
# Python ones (wheels built here where the index has only a source archive).
COMPILED="grain array-record"
PURE="monai ml-collections tensorflow-datasets tensorflow-metadata googleapis-common-protos nibabel
  immutabledict promise toml portpicker"
pins() {
  "$PYTHON" - "$@" <<'EOF'
import importlib.metadata, sys
for name in sys.argv[1:]:
    try:
        print(f"{name}=={importlib.metadata.version(name)}")
    except importlib.metadata.PackageNotFoundError:
        print(name)
EOF
}
if [ -n "$FETCH" ]; then
  # shellcheck disable=SC2046,SC2086
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$FETCH" \
    $(pins $COMPILED) && "$PYTHON" -m pip wheel -q --no-deps -w "$FETCH" $(pins $PURE) || exit 1
  echo "gpu_check: $(ls "$FETCH"/*.whl | wc -l) wheels in $FETCH ($(du -sh "$FETCH" | cut -f1))"
  exit 0
fi
[ -n "$OUT" ] || usage
case "$ROUNDS" in ""|1|2) ;; *) echo "gpu_check: --rounds $ROUNDS; use 1 or 2" >&2; exit 2 ;; esac
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
LOG="$OUT/gpu_check.log"
: >"$LOG"
say() { echo "gpu_check: $*" | tee -a "$LOG"; }
STEP_ARGS=(--out "$OUT")
[ "$DRY" = 1 ] && STEP_ARGS+=(--cpu-dry-run)
[ -n "$PLAN" ] && STEP_ARGS+=(--plan "$PLAN")
[ -n "$ROUNDS" ] && STEP_ARGS+=(--rounds "$ROUNDS")  # default: 2 (ABBA) on the GPU, 1 dry
START=$SECONDS
"$PYTHON" -m benchmarks.gpu_check plan "${STEP_ARGS[@]}" >/dev/null || exit 2
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1

if [ "$DRY" = 0 ]; then
  if [ -z "$WHEELS" ] && [ -d .whl ]; then WHEELS=.whl; fi
  if [ -n "$WHEELS" ]; then
    say "installing $(ls "$WHEELS"/*.whl | wc -l) carried wheels from $WHEELS into /tmp/gpu_check_site"
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/gpu_check_site "$WHEELS"/*.whl >>"$LOG" 2>&1 || { say "wheel install failed"; exit 1; }
    export PYTHONPATH=$PYTHONPATH:/tmp/gpu_check_site
  fi
  DRIVER=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
  if ! "$PYTHON" -c "import jax, sys; sys.exit(jax.default_backend() != 'gpu')" 2>>"$LOG"; then
    CUDA=cuda12
    [ "${DRIVER%%.*}" -ge 580 ] 2>/dev/null && CUDA=cuda13
    JAX_VERSION=$("$PYTHON" -c "import jax; print(jax.__version__)")
    say "jax sees no GPU (driver '${DRIVER:-none}'): installing jax[$CUDA]==$JAX_VERSION"
    "$PYTHON" -m pip install -q "jax[$CUDA]==$JAX_VERSION" >>"$LOG" 2>&1 \
      || { say "cannot install jax[$CUDA] (no index here?): bring a CUDA jax"; exit 1; }
  fi
  "$PYTHON" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>>"$LOG" \
    || { say "torch sees no GPU: install a CUDA build of torch"; exit 1; }
else
  DRIVER=""
  # Toy sizes compile in seconds with XLA's optimisations off; the numbers are not figures.
  export JAX_DISABLE_MOST_OPTIMIZATIONS=1
fi
"$PYTHON" -c "import importlib.util as u, sys; sys.exit(not u.find_spec('monai'))" \
  || { say "MONAI is missing: fetch wheels (--fetch-wheels .whl) and carry them"; exit 2; }
# Fresh compilation caches: round 1 compiles cold, round 2 finds them (both frameworks alike).
CACHE=$(mktemp -d /tmp/gpu_check_cache.XXXX)
export JAX_COMPILATION_CACHE_DIR=$CACHE/jax TORCHINDUCTOR_CACHE_DIR=$CACHE/inductor

FAILED=()
run_step() {
  local name=$1; shift
  say "step $name ($((SECONDS - START)) s so far)"
  if "$@" >>"$LOG" 2>&1; then :; else FAILED+=("$name"); say "step $name FAILED (see the log)"; fi
  "$PYTHON" -m benchmarks.gpu_check report --out "$OUT" >/dev/null 2>>"$LOG"
}
run_step env "$PYTHON" -m benchmarks.gpu_check env "${STEP_ARGS[@]}" --driver "$DRIVER"
run_step tests "$PYTHON" -m pytest -q -m gpu -p no:cacheprovider -p no:xdist tests/test_gpu.py \
  --junitxml "$CACHE/gpu_tests.xml"
run_step tests_json "$PYTHON" -m benchmarks.gpu_check tests "${STEP_ARGS[@]}" --junit "$CACHE/gpu_tests.xml"
run_step vs_monai "$PYTHON" -m benchmarks.gpu_check vs_monai "${STEP_ARGS[@]}"
run_step volume "$PYTHON" -m benchmarks.gpu_check volume "${STEP_ARGS[@]}"
say "done in $((SECONDS - START)) s; table: $OUT/gpu_check.md${FAILED[*]:+; failed: ${FAILED[*]}}"
rm -rf "$CACHE"
[ ${#FAILED[@]} -eq 0 ]
