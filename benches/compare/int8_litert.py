"""The int8 reference: TensorFlow Lite's own post-training quantization (the converter, full
int8 with a representative dataset, LiteRT's interpreter with XNNPACK) of the same f32 model
zeronn quantizes, so that `zeronn quantize`'s accuracy and speed have a peer.

Usage: python int8_litert.py DATA_DIR MODEL.zrnn [--calib 300]
The model: an MLP of Affine and ReLU layers (784-50-10, the chapter 5 net, say), from
`zeronn train --save`. Calibrates on the first N training images as `zeronn quantize` does,
then prints one JSON object: the f32 and int8 test accuracies, and the time of an int8
evaluation pass over all 70 000 images (chunks of 1000, one thread).
"""
import argparse
import json
import os
import struct
import tempfile
import time
import zlib

import numpy as np

from mnist import load_mnist


def read_zrnn(path):
    """The Affine layers (W, b) and ReLU flags of a version 2 f32 zeronn model."""
    b = open(path, "rb").read()
    magic, version, elem, order, header_len, payload_len, crc_payload, crc_header, n = \
        struct.unpack_from("<4sHBBIIIIH", b, 0)
    assert magic == b"ZRNN" and version == 2 and elem == 1 and order == 1, "not a version 2 f32 model"
    assert len(b) == header_len + payload_len and zlib.crc32(b[header_len:]) == crc_payload
    values = np.frombuffer(b, "<f4", offset=header_len)
    layers, at = [], 0
    for i in range(n):
        kind, _, a, b_, *_ = struct.unpack_from("<HH7I", b, 32 + 32 * i)
        if kind == 1:
            w = values[at:at + a * b_].reshape(a, b_)
            bias = values[at + a * b_:at + a * b_ + b_]
            at += a * b_ + b_
            layers.append([w, bias, False])
        elif kind == 2:
            layers[-1][2] = True
        elif kind != 4:
            raise SystemExit(f"layer {i + 1}: only Affine, Relu and SoftmaxWithLoss here")
    return layers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("model")
    ap.add_argument("--calib", type=int, default=300)
    a = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    (xtr, ttr), (xte, tte) = load_mnist(a.data)
    layers = read_zrnn(a.model)
    keras = tf.keras.Sequential([tf.keras.Input((layers[0][0].shape[0],))] + [
        tf.keras.layers.Dense(w.shape[1], activation="relu" if relu else None) for w, _, relu in layers])
    keras.set_weights([v for w, b, _ in layers for v in (w, b)])
    calib = xtr[:a.calib]

    def representative():
        for i in range(len(calib)):
            yield [calib[i:i + 1]]

    conv = tf.lite.TFLiteConverter.from_keras_model(keras)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    path = os.path.join(tempfile.mkdtemp(), "int8.tflite")
    with open(path, "wb") as f:
        f.write(conv.convert())
    interps = {}

    def run(xq):
        n = xq.shape[0]
        if n not in interps:
            it = Interpreter(model_path=path, num_threads=1)
            it.resize_tensor_input(it.get_input_details()[0]["index"], [n, xq.shape[1]])
            it.allocate_tensors()
            interps[n] = it
        it = interps[n]
        it.set_tensor(it.get_input_details()[0]["index"], xq)
        it.invoke()
        return it.get_tensor(it.get_output_details()[0]["index"])

    det = Interpreter(model_path=path).get_input_details()[0]
    scale, zp = det["quantization"]
    quant = lambda x: np.clip(np.round(x / scale) + zp, -128, 127).astype(np.int8)
    f32 = keras.predict(xte, verbose=0).argmax(1)
    chunk = 1000
    xall = np.concatenate([xtr, xte])
    qall = quant(xall)
    qte = quant(xte)
    int8 = np.concatenate([run(qte[i:i + chunk]).argmax(1) for i in range(0, len(qte), chunk)])

    def evaluate():
        for i in range(0, len(qall), chunk):
            run(qall[i:i + chunk])

    evaluate()
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        evaluate()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"f32_test_acc": float((f32 == tte).mean()), "int8_test_acc": float((int8 == tte).mean()),
                      "same_class": int((f32 == int8).sum()), "input_scale": float(scale), "input_zero_point": int(zp),
                      "int8_eval_pass_s": sorted(times)[3]}))


if __name__ == "__main__":
    main()
