"""Inference of the book's chapter 5 net (784-50-10, ReLU) in the inference runtimes
firmware and edge users deploy with, on one thread: ONNX Runtime (f32) and LiteRT (the
TensorFlow Lite runtime, f32 with its default XNNPACK delegate). Timed as zeronn bench times
it: an evaluation pass over all 70 000 MNIST images (the 60 000 training and 10 000 test
images in batches of 1 000, the best size for both runtimes here, or CHUNK=N; argmax compared
with the labels) and the forward of one image.

The weights are the same random N(0, 0.01²) draws in both (timing does not depend on them);
the models are built here: ONNX with the onnx helper, LiteRT by converting a Keras model.

Usage: python book_infer.py DATA_DIR {onnxruntime,litert}
Prints one JSON object with the timings (seconds).
"""
import argparse
import json
import os
import tempfile

import numpy as np

from mnist import load_mnist
from timing import median_time

CHUNK = int(os.environ.get("CHUNK", "1000"))


def weights():
    rng = np.random.default_rng(1)
    return (rng.normal(0, 0.01, (784, 50)).astype(np.float32), np.zeros(50, np.float32),
            rng.normal(0, 0.01, (50, 10)).astype(np.float32), np.zeros(10, np.float32))


def onnxruntime_predictor():
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    w1, b1, w2, b2 = weights()
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W1", "b1"], ["a1"]), helper.make_node("Relu", ["a1"], ["z1"]),
         helper.make_node("Gemm", ["z1", "W2", "b2"], ["y"])],
        "book", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 784])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(a, n) for a, n in zip((w1, b1, w2, b2), ("W1", "b1", "W2", "b2"))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return lambda x: sess.run(None, {"x": x})[0]


def litert_predictor():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    w1, b1, w2, b2 = weights()
    model = tf.keras.Sequential([tf.keras.Input((784,)), tf.keras.layers.Dense(50, activation="relu"),
                                 tf.keras.layers.Dense(10)])
    model.set_weights([w1, b1, w2, b2])
    flat = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    path = os.path.join(tempfile.mkdtemp(), "book.tflite")
    with open(path, "wb") as f:
        f.write(flat)
    interps = {}

    def run(x):
        n = x.shape[0]
        if n not in interps:
            it = Interpreter(model_path=path, num_threads=1)
            it.resize_tensor_input(it.get_input_details()[0]["index"], [n, 784])
            it.allocate_tensors()
            interps[n] = it
        it = interps[n]
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        return it.get_tensor(it.get_output_details()[0]["index"])

    return run


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("runtime", choices=["onnxruntime", "litert"])
    a = ap.parse_args()
    (xtr, ttr), (xte, tte) = load_mnist(a.data)
    x = np.ascontiguousarray(np.concatenate([xtr, xte]))
    t = np.concatenate([ttr, tte])
    predict = onnxruntime_predictor() if a.runtime == "onnxruntime" else litert_predictor()

    def evaluate():
        return sum(int((predict(x[i:i + CHUNK]).argmax(axis=1) == t[i:i + CHUNK]).sum())
                   for i in range(0, len(x), CHUNK))

    x1 = x[:1].copy()
    print(json.dumps({"eval_pass_s": median_time(evaluate, 7, 1),
                      "forward1_s": median_time(lambda: predict(x1), 7, 2000)}))
