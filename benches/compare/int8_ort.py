"""The other int8 peer: ONNX Runtime's own post-training quantization (`quantize_static`, per
channel, calibrated on the same training images) of the same f32 model zeronn quantizes, run
by ONNX Runtime on one thread, so that `zeronn quantize`'s accuracy and speed have a second
peer beside LiteRT (int8_litert.py).

Usage: python int8_ort.py DATA_DIR MODEL.zrnn [--calib 300]
Needs onnx, onnxruntime and numpy. ONNX Runtime gets its best setting on x86: activations
uint8 and weights int8 (its VNNI kernels take u8 × s8), QOperator form, one intra-op thread.
Prints one JSON object: the f32 and int8 test accuracies, the same-class count, and the time
of an int8 evaluation pass over all 70 000 images (chunks of 1000), the median of 7.
"""
import argparse
import logging
import json
import os
import tempfile
import time

import numpy as np

from int8_litert import read_zrnn
from mnist import load_mnist


def onnx_model(layers):
    """The MLP as an ONNX graph of MatMul, Add and Relu over a dynamic batch."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, name = [], [], "x"
    for k, (w, b, relu) in enumerate(layers):
        inits += [numpy_helper.from_array(w.astype(np.float32), f"W{k + 1}"),
                  numpy_helper.from_array(b.astype(np.float32), f"b{k + 1}")]
        nodes += [helper.make_node("MatMul", [name, f"W{k + 1}"], [f"m{k + 1}"]),
                  helper.make_node("Add", [f"m{k + 1}", f"b{k + 1}"], [f"a{k + 1}"])]
        name = f"a{k + 1}"
        if relu:
            nodes.append(helper.make_node("Relu", [name], [f"r{k + 1}"]))
            name = f"r{k + 1}"
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", layers[0][0].shape[0]])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n", layers[-1][0].shape[1]])],
        inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("model")
    ap.add_argument("--calib", type=int, default=300)
    a = ap.parse_args()
    logging.getLogger().setLevel(logging.ERROR)  # quantize_static's advice to pre-process
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    (xtr, _), (xte, tte) = load_mnist(a.data)
    layers = read_zrnn(a.model)
    d = tempfile.mkdtemp()
    f32_path, int8_path = os.path.join(d, "f32.onnx"), os.path.join(d, "int8.onnx")
    onnx.save(onnx_model(layers), f32_path)
    calib = xtr[:a.calib].astype(np.float32)

    class Calib(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib[i:i + 1] for i in range(len(calib)))

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"x": x}

    quantize_static(f32_path, int8_path, Calib(), quant_format=QuantFormat.QOperator,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    f32 = ort.InferenceSession(f32_path, opts, providers=["CPUExecutionProvider"])
    int8 = ort.InferenceSession(int8_path, opts, providers=["CPUExecutionProvider"])
    chunk = 1000
    run = lambda s, x: s.run(None, {"x": x})[0]
    f32_cls = np.concatenate([run(f32, xte[i:i + chunk]).argmax(1) for i in range(0, len(xte), chunk)])
    int8_cls = np.concatenate([run(int8, xte[i:i + chunk]).argmax(1) for i in range(0, len(xte), chunk)])
    xall = np.concatenate([xtr, xte]).astype(np.float32)

    def evaluate(s):
        for i in range(0, len(xall), chunk):
            run(s, xall[i:i + chunk])

    times = {}
    for s, key in [(int8, "int8_eval_pass_s"), (f32, "f32_eval_pass_s")]:
        evaluate(s)
        t = []
        for _ in range(7):
            t0 = time.perf_counter()
            evaluate(s)
            t.append(time.perf_counter() - t0)
        times[key] = sorted(t)[3]
    print(json.dumps({"ort": ort.__version__, "f32_test_acc": float((f32_cls == tte).mean()),
                      "int8_test_acc": float((int8_cls == tte).mean()),
                      "same_class": int((f32_cls == int8_cls).sum()), **times}))


if __name__ == "__main__":
    main()
