#!/usr/bin/env bash
# Side by side on this machine: zeronn against our NumPy, PyTorch and candle versions of the
# book's chapter 5 run, in alternation, repeated; prints medians and ratios as Markdown tables.
#
#   ZERONN_DATA=DIR benches/compare/run.sh [--reps 3] [--no-candle]
#   ZERONN_DATA=DIR benches/compare/run.sh --pairs 20    # zeronn on 1 against 2 threads only
#   ZERONN_DATA=DIR benches/compare/run.sh --workload optimizers --reps 5   # chapter 6's Adam net
#   ZERONN_DATA=DIR benches/compare/run.sh --workload convnets --reps 3     # chapters 7-8's conv nets
#
# NumPy and PyTorch come from the Python package index into a virtualenv made here
# (target/compare-venv, or $COMPARE_VENV); candle from crates.io into its own cargo project
# (candle/, about 3 minutes to build the first time). Timings are noisy: not part of CI's
# pass/fail.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
data=${ZERONN_DATA:?set ZERONN_DATA to the directory with the MNIST IDX files}
venv=${COMPARE_VENV:-$root/target/compare-venv}
args=()
candle=()
pairs=no
for a in "$@"; do
    if [ "$a" = --no-candle ]; then candle=(none); else args+=("$a"); fi
    if [ "$a" = --pairs ]; then pairs=yes; fi
    if [ "$a" = optimizers ] || [ "$a" = convnets ]; then candle=(none); fi
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
if [ ${#candle[@]} -eq 0 ]; then
    cargo build --release --quiet --manifest-path "$here/candle/Cargo.toml"
    candle=(--candle "$here/candle/target/release/book-candle")
else
    candle=()
fi
exec "$venv/bin/python" "$here/compare.py" --zeronn "$root/target/release/zeronn" --data "$data" \
    "${candle[@]}" "${args[@]}"
