#!/usr/bin/env bash
# Side by side on this machine: zeronn against JAX, PyTorch, candle and the book's NumPy code on
# the book's chapter 5 run, and against ONNX Runtime and LiteRT for inference, in alternation,
# repeated; prints medians and ratios as Markdown tables.
#
#   ZERONN_DATA=DIR benches/compare/run.sh [--reps 3] [--no-candle] [--no-litert]
#   ZERONN_DATA=DIR benches/compare/run.sh --pairs 20    # zeronn on 1 against 2 threads, quiet then loaded
#   ZERONN_DATA=DIR benches/compare/run.sh --workload optimizers --reps 5   # chapter 6's Adam net
#   ZERONN_DATA=DIR benches/compare/run.sh --workload convnets --reps 3     # chapters 7-8's conv nets
#   ZERONN_DATA=DIR benches/compare/run.sh --workload int8 --reps 3         # int8 against LiteRT, ONNX Runtime
#
# NumPy, JAX, PyTorch and ONNX Runtime come from the Python package index into a virtualenv
# made here (target/compare-venv, or $COMPARE_VENV), LiteRT into another (target/litert-venv,
# or $LITERT_VENV); candle from crates.io into its own cargo project (candle/, about 3 minutes
# to build the first time). Timings are noisy: not part of CI's
# pass/fail.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
data=${ZERONN_DATA:?set ZERONN_DATA to the directory with the MNIST IDX files}
venv=${COMPARE_VENV:-$root/target/compare-venv}
args=()
candle=()
pairs=no
litert_wanted=yes
for a in "$@"; do
    if [ "$a" = --no-candle ]; then candle=(none)
    elif [ "$a" = --no-litert ]; then litert_wanted=no
    else args+=("$a"); fi
    if [ "$a" = --pairs ]; then pairs=yes; fi
    if [ "$a" = optimizers ] || [ "$a" = convnets ]; then candle=(none); litert_wanted=no; fi
    if [ "$a" = int8 ]; then candle=(none); fi
done
(cd "$root" && cargo build --release -p zeronn-tools --quiet)
if [ $pairs = yes ]; then
    # zeronn alone: no virtualenv, no candle.
    exec python3 "$here/compare.py" --zeronn "$root/target/release/zeronn" --data "$data" \
        "${args[@]}"
fi
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import numpy, torch, jax, threadpoolctl, onnx, onnxruntime' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --progress-bar off numpy torch jax threadpoolctl onnx onnxruntime
fi
# LiteRT (TensorFlow Lite's runtime) wants its own virtualenv: tensorflow-cpu, to convert the
# model, is 1.6 GB and pins its own NumPy. Left out with --no-litert.
litert=()
if [ "$litert_wanted" = yes ]; then
    lvenv=${LITERT_VENV:-$root/target/litert-venv}
    if [ ! -x "$lvenv/bin/python" ] || ! "$lvenv/bin/python" -c 'import tensorflow, ai_edge_litert' 2>/dev/null; then
        python3 -m venv "$lvenv"
        "$lvenv/bin/pip" install --quiet --progress-bar off tensorflow-cpu ai-edge-litert numpy
    fi
    litert=(--litert-python "$lvenv/bin/python")
fi
if [ ${#candle[@]} -eq 0 ]; then
    cargo build --release --quiet --manifest-path "$here/candle/Cargo.toml"
    candle=(--candle "$here/candle/target/release/book-candle")
else
    candle=()
fi
exec "$venv/bin/python" "$here/compare.py" --zeronn "$root/target/release/zeronn" --data "$data" \
    "${candle[@]}" "${litert[@]}" "${args[@]}"
