#!/usr/bin/env bash
# Writes the small seed corpus (fuzz/corpus/<target>/, not committed: CI and fuzzers make it) from a tiny CSV through the zeronn
# command: model files (an MLP with BatchNorm and Dropout, its int8 form, a conv net and a conv net in int8), their ONNX and
# safetensors exports, IDX files raw and gzip, CSV and .npy/.npz data, a checkpoint. Run from the repo root
# after `cargo build --release -p zeronn-tools`.
set -euo pipefail
z=${ZERONN:-./target/release/zeronn}
c=fuzz/corpus
tmp=$(mktemp -d)
mkdir -p $c/model $c/onnx $c/safetensors $c/idx $c/dataset $c/checkpoint
python3 - "$tmp" <<'PY'
import gzip, struct, sys, random, zipfile, io
d = sys.argv[1]
random.seed(1)
rows = ["a,b,c,d,label"] + [",".join(f"{random.gauss(k, 1):.3f}" for _ in range(4)) + f",{k}" for k in [0, 1, 2] * 10]
open(f"{d}/tiny.csv", "w").write("\n".join(rows) + "\n")
# 6x6 images, 3 classes, as uint8 .npz for a conv net.
def npy(descr, shape, data):
    h = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")")
    h += " " * ((64 - (10 + len(h) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() + data
n = 30
x = bytes(random.randrange(256) if random.random() < 0.3 else 0 for _ in range(n * 36))
t = struct.pack(f"<{n}q", *[i % 3 for i in range(n)])
with zipfile.ZipFile(f"{d}/img.npz", "w") as z:
    z.writestr("x.npy", npy("|u1", (n, 6, 6), x))
    z.writestr("t.npy", npy("<i8", (n,), t))
open(f"{d}/x.npy", "wb").write(npy("<f4", (3, 2), struct.pack("<6f", 1, 2, 3, 4, 5, 6)))
# IDX: 3 images of 4x4, and 3 labels; raw and gzip.
img = struct.pack(">IIII", 0x803, 3, 4, 4) + bytes(range(48))
lab = struct.pack(">II", 0x801, 3) + bytes([1, 2, 3])
open(f"{d}/img.idx", "wb").write(img)
open(f"{d}/lab.idx", "wb").write(lab)
open(f"{d}/img.idx.gz", "wb").write(gzip.compress(img))
PY
$z train --data $tmp/tiny.csv --hidden 5 --batch-norm --dropout 0.2 --iters 3 --batch-size 5 --seed 1 --no-progress --save $c/model/mlp-bn.zrnn \
    --optimizer adam --checkpoint $c/checkpoint/mlp-bn.ck --checkpoint-every 1 >/dev/null 2>&1
$z train --data $tmp/img.npz --net conv2x3p1,relu,pool2,bn,4,relu,3 --iters 3 --batch-size 5 --seed 1 --no-progress --save $c/model/conv.zrnn >/dev/null 2>&1
# The int8 form of the MLP (BatchNorm and Dropout folded), both weight layouts, and of a conv net, for the
# model target's int8 reader.
$z quantize --data $tmp/tiny.csv --model $c/model/mlp-bn.zrnn --out $c/model/mlp-int8.zrnn >/dev/null 2>&1
$z quantize --data $tmp/tiny.csv --model $c/model/mlp-bn.zrnn --layout cortex-m --out $c/model/mlp-int8-cortex-m.zrnn >/dev/null 2>&1
$z train --data $tmp/img.npz --net conv2x3p1,relu,pool2,4,relu,3 --iters 3 --batch-size 5 --seed 1 --no-progress --save $tmp/conv-plain.zrnn >/dev/null 2>&1
$z quantize --data $tmp/img.npz --model $tmp/conv-plain.zrnn --out $c/model/conv-int8.zrnn >/dev/null 2>&1
for m in mlp-bn conv; do
    $z export-onnx --model $c/model/$m.zrnn --out $c/onnx/$m.onnx >/dev/null
    $z export --format safetensors --model $c/model/$m.zrnn --out $c/safetensors/$m.safetensors >/dev/null
done
cp $tmp/img.idx $tmp/lab.idx $tmp/img.idx.gz $c/idx/
cp $tmp/tiny.csv $tmp/img.npz $tmp/x.npy $c/dataset/
rm -rf "$tmp"
du -sh $c
