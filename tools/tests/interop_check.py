#!/usr/bin/env python3
"""ONNX and safetensors in and out of zeronn, checked against ONNX Runtime and NumPy on MNIST
test images.

    interop_check.py ZERONN DATA_DIR WORK_DIR [--images N]
    interop_check.py ZERONN DATA_DIR WORK_DIR --torch-train EPOCHS

Import: builds ONNX models with the `onnx` package (an MLP of Gemm/Relu/Softmax; an MLP of
MatMul+Add, BatchNormalization folded and not, Sigmoid, Dropout, LogSoftmax; a CNN with
Conv, BatchNormalization, MaxPool, Reshape, Mul/Add by constants) and, if PyTorch is
installed, with torch.onnx.export (an MLP with BatchNorm1d and Dropout, the book's
SimpleConvNet with a BatchNorm2d). Each runs in ONNX Runtime, is imported by `zeronn import`,
and `zeronn eval --logits` must give logits within 1e-5 (absolute) of ONNX Runtime's and the
same argmax on every image.

Export: zeronn trains short runs (the chapter 5 net, an MLP with BatchNorm and Dropout,
SimpleConvNet, a conv net with BatchNorm after a conv); `zeronn export-onnx` writes them;
ONNX Runtime's logits must be within 1e-5 of zeronn's, with the same argmax; and the exported
file imports back into zeronn with the same logits.

safetensors: `zeronn export --format safetensors` of a trained MLP with BatchNorm and Dropout
is read by `safetensors.numpy.load_file`, NumPy computes the forward pass from the layer list in
its metadata, and the logits must match `zeronn eval --logits`; a file written by Python (with
the metadata, and without it given `--net`) imports into zeronn with NumPy's logits.

With --torch-train, instead: PyTorch trains an MLP (BatchNorm, Dropout) and a small conv net
on MNIST; both go through torch.onnx.export and `zeronn import`, and `zeronn eval` must give
the test accuracy PyTorch gives (all 10 000 images).

Errors: an unsupported op, a grouped Conv and a truncated file are refused with a message
naming the node (or the file), and no model file is written.
"""

import gzip
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

TOL = 1e-5


def raw_mnist(data, stem, offset, shape):
    for name in (stem, stem + ".gz"):
        p = os.path.join(data, name)
        if os.path.exists(p):
            with (gzip.open(p) if name.endswith(".gz") else open(p, "rb")) as f:
                return np.frombuffer(f.read(), np.uint8, offset=offset).reshape(shape)
    sys.exit(f"no {stem}(.gz) in {data}")


def load_test(data, n):
    x = raw_mnist(data, "t10k-images-idx3-ubyte", 16, (-1, 784))
    t = raw_mnist(data, "t10k-labels-idx1-ubyte", 8, (-1,))
    return x[:n].astype(np.float32) / 255.0, t[:n]


class Check:
    def __init__(self, zeronn, data, work, n):
        self.zeronn, self.data, self.work, self.n = zeronn, data, work, n
        self.x, self.t = load_test(data, n)
        self.failures = []

    def run(self, *args, ok=True):
        r = subprocess.run([self.zeronn, *args], capture_output=True, text=True)
        if ok and r.returncode != 0:
            raise RuntimeError(f"zeronn {' '.join(args)} failed:\n{r.stdout}{r.stderr}")
        return r

    def ort(self, path, output):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        inp = s.get_inputs()[0]
        x = self.x.reshape(-1, 1, 28, 28) if len(inp.shape) == 4 else self.x
        return s.run([output], {inp.name: x})[0]

    def zeronn_logits(self, model):
        out = os.path.join(self.work, os.path.basename(model) + ".logits.npy")
        line = self.run("eval", "--data", self.data, "--model", model, "--limit", str(self.n),
                        "--logits", out).stdout.strip()
        return np.load(out), line

    def compare(self, what, ours, theirs):
        diff = float(np.abs(ours - theirs).max())
        same = int((ours.argmax(1) == theirs.argmax(1)).sum())
        acc = float((theirs.argmax(1) == self.t).mean())
        ok = diff <= TOL and same == len(ours)
        print(f"{'ok  ' if ok else 'FAIL'} {what}: max |logit difference| {diff:.2e}, "
              f"same argmax {same}/{len(ours)}, accuracy {acc:.4f}")
        if not ok:
            self.failures.append(what)

    def imported(self, name, model, logits="logits"):
        """Saves `model`, runs it in ONNX Runtime, imports it and compares the logits."""
        path = os.path.join(self.work, name + ".onnx")
        onnx.checker.check_model(model)
        onnx.save(model, path)
        self.imported_file(name, path, logits)

    def imported_file(self, name, path, logits="logits"):
        theirs = self.ort(path, logits)
        zrnn = os.path.join(self.work, name + ".zrnn")
        r = self.run("import", path, "--out", zrnn)
        print(f"     {r.stdout.strip()}")
        ours, _ = self.zeronn_logits(zrnn)
        self.compare(f"import {name}", ours, theirs)

    def exported(self, name, train_args):
        zrnn = os.path.join(self.work, name + ".zrnn")
        self.run("train", "--data", self.data, "--seed", "1", "--no-progress", *train_args,
                 "--save", zrnn)
        path = os.path.join(self.work, name + ".onnx")
        self.run("export-onnx", "--model", zrnn, "--out", path)
        onnx.checker.check_model(onnx.load(path), full_check=True)
        ours, line = self.zeronn_logits(zrnn)
        theirs = self.ort(path, "logits")
        self.compare(f"export {name} ({line})", ours, theirs)
        probs = self.ort(path, "probabilities")
        if np.abs(probs.sum(1) - 1).max() > 1e-5 or (probs.argmax(1) != ours.argmax(1)).any():
            print(f"FAIL export {name}: probabilities are not the softmax of the logits")
            self.failures.append(f"export {name} probabilities")
        back = os.path.join(self.work, name + ".back.zrnn")
        self.run("import", path, "--out", back)
        again, _ = self.zeronn_logits(back)
        self.compare(f"export {name} and import again", again, ours)

    def refused(self, name, model, expect):
        path = os.path.join(self.work, name + ".onnx")
        if isinstance(model, bytes):
            open(path, "wb").write(model)
        else:
            onnx.save(model, path)
        self.refused_file(name, path, expect)

    def refused_file(self, name, path, expect):
        zrnn = os.path.join(self.work, name + ".zrnn")
        r = self.run("import", path, "--out", zrnn, ok=False)
        msg = r.stderr.strip()
        ok = r.returncode != 0 and all(e in msg for e in expect) and not os.path.exists(zrnn)
        print(f"{'ok  ' if ok else 'FAIL'} refuse {name}: {msg}")
        if not ok:
            self.failures.append(f"refuse {name}")


rng = np.random.default_rng(7)


def init(name, shape, std=None):
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    std = std if std is not None else np.sqrt(2.0 / fan_in)
    return numpy_helper.from_array((rng.standard_normal(shape) * std).astype(np.float32), name)


def bn_params(prefix, c):
    return [
        numpy_helper.from_array(rng.uniform(0.5, 1.5, c).astype(np.float32), prefix + "_scale"),
        numpy_helper.from_array((rng.standard_normal(c) * 0.1).astype(np.float32), prefix + "_B"),
        numpy_helper.from_array((rng.standard_normal(c) * 0.1).astype(np.float32), prefix + "_mean"),
        numpy_helper.from_array(rng.uniform(0.5, 1.5, c).astype(np.float32), prefix + "_var"),
    ]


def bn(prefix, x, out, eps=1e-5):
    names = [prefix + s for s in ("_scale", "_B", "_mean", "_var")]
    return helper.make_node("BatchNormalization", [x, *names], [out], name=prefix, epsilon=eps)


def model(nodes, inits, x_shape, outputs, opset=13):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *x_shape])
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["N", 10]) for o in outputs]
    g = helper.make_graph(nodes, "g", [x], outs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def mlp_gemm():
    inits = [init("W1", (100, 784)), init("b1", (100,), 0.1), init("W2", (10, 100)),
             init("b2", (10,), 0.1)]
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["h1"], name="fc1", transB=1),
        helper.make_node("Relu", ["h1"], ["r1"], name="relu1"),
        helper.make_node("Gemm", ["r1", "W2", "b2"], ["logits"], name="fc2", transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1),
    ]
    return model(nodes, inits, [784], ["logits", "probs"])


def mlp_matmul_bn():
    inits = [init("W1", (784, 64)), init("b1", (64,), 0.1), *bn_params("bn1", 64),
             init("W2", (64, 32)), init("b2", (1, 32), 0.1), *bn_params("bn2", 32),
             init("W3", (32, 10)), init("b3", (10,), 0.1)]
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], name="flatten", axis=1),
        helper.make_node("MatMul", ["f", "W1"], ["m1"], name="matmul1"),
        helper.make_node("Add", ["b1", "m1"], ["a1"], name="add1"),
        bn("bn1", "a1", "n1"),
        helper.make_node("Sigmoid", ["n1"], ["s1"], name="sigmoid1"),
        helper.make_node("Dropout", ["s1"], ["d1"], name="dropout1"),
        helper.make_node("Gemm", ["d1", "W2", "b2"], ["h2"], name="fc2", alpha=0.5, beta=2.0),
        helper.make_node("Relu", ["h2"], ["r2"], name="relu2"),
        bn("bn2", "r2", "n2", eps=1e-3),
        helper.make_node("Gemm", ["n2", "W3", "b3"], ["logits"], name="fc3"),
        helper.make_node("LogSoftmax", ["logits"], ["logp"], name="logsoftmax"),
    ]
    return model(nodes, inits, [1, 28, 28], ["logits", "logp"])


def cnn():
    inits = [init("W1", (8, 1, 3, 3)), init("b1", (8,), 0.1), *bn_params("bn1", 8),
             init("W2", (16, 8, 5, 5)), *bn_params("bn2", 16),
             numpy_helper.from_array(rng.uniform(0.5, 1.5, (16, 1, 1)).astype(np.float32), "scale"),
             numpy_helper.from_array(rng.uniform(-0.1, 0.1, (1, 400)).astype(np.float32), "shift"),
             init("W3", (10, 400)), init("b3", (10,), 0.1)]
    nodes = [
        helper.make_node("Constant", [], ["shape"], name="shape",
                         value=numpy_helper.from_array(np.array([-1, 400], np.int64))),
        helper.make_node("Conv", ["x", "W1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1], strides=[1, 1]),
        bn("bn1", "c1", "n1"),  # folded into conv1
        helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Conv", ["p1", "W2"], ["c2"], name="conv2", kernel_shape=[5, 5]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        bn("bn2", "r2", "n2"),  # a BatchNorm layer, per channel spread over 10x10 values
        helper.make_node("Mul", ["n2", "scale"], ["m2"], name="mul2"),
        helper.make_node("MaxPool", ["m2"], ["p2"], name="pool2", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Flatten", ["p2"], ["f2"], name="flatten2"),
        helper.make_node("Add", ["f2", "shift"], ["a2"], name="add2"),
        helper.make_node("Reshape", ["a2", "shape"], ["a2r"], name="reshape"),
        helper.make_node("Gemm", ["a2r", "W3", "b3"], ["logits"], name="fc", transB=1),
    ]
    return model(nodes, inits, [1, 28, 28], ["logits"])


def torch_models(check):
    try:
        import torch
        from torch import nn
    except ImportError:
        print("(PyTorch not installed: the torch.onnx.export models are skipped)")
        return
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.BatchNorm1d(100), nn.ReLU(),
                        nn.Dropout(0.3), nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 10))
    conv = nn.Sequential(nn.Conv2d(1, 30, 5), nn.BatchNorm2d(30), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(30 * 12 * 12, 100), nn.ReLU(),
                         nn.Linear(100, 10))
    for name, m in (("torch-mlp", mlp), ("torch-convnet", conv)):
        for mod in m.modules():
            if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.data.uniform_(0.5, 1.5)
        m.eval()
        path = os.path.join(check.work, name + ".onnx")
        kw = {"dynamo": False} if "dynamo" in torch.onnx.export.__code__.co_varnames else {}
        torch.onnx.export(m, torch.zeros(1, 1, 28, 28), path, opset_version=13,
                          input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}}, **kw)
        check.imported_file(name, path)
        ours = np.load(os.path.join(check.work, name + ".zrnn.logits.npy"))
        with torch.no_grad():
            pt = m(torch.from_numpy(check.x.reshape(-1, 1, 28, 28))).numpy()
        check.compare(f"import {name} against PyTorch itself", ours, pt)


def numpy_forward(net, tensors, x):
    """The forward pass of an MLP written as `zeronn.net` (`100,bn,relu,dropout0.2,10,softmax`)
    over the book's tensor names, in float64."""
    x = x.astype(np.float64)
    affine = norm = 0
    for tok in net.split(","):
        if tok.isdigit():
            affine += 1
            x = x @ tensors[f"W{affine}"] + tensors[f"b{affine}"]
        elif tok == "relu":
            x = np.maximum(x, 0)
        elif tok == "sigmoid":
            x = 1 / (1 + np.exp(-x))
        elif tok == "bn":
            norm += 1
            t = {k: tensors[f"{k}{norm}"] for k in ("gamma", "beta", "running_mean", "running_var")}
            x = (x - t["running_mean"]) / np.sqrt(t["running_var"] + 1e-6) * t["gamma"] + t["beta"]
        elif tok.startswith("dropout"):
            x = x * (1 - float(tok[len("dropout"):] or 0.5))
        elif tok != "softmax":
            raise ValueError(f"layer {tok} is not in this NumPy forward pass")
    return x


def safetensors_round_trips(check):
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    # zeronn -> Python
    zrnn = os.path.join(check.work, "st-mlp.zrnn")
    check.run("train", "--data", check.data, "--seed", "1", "--no-progress", "--hidden", "100,100",
              "--batch-norm", "--dropout", "0.2", "--optimizer", "adam", "--iters", "300",
              "--save", zrnn)
    path = os.path.join(check.work, "st-mlp.safetensors")
    check.run("export", "--format", "safetensors", "--model", zrnn, "--out", path)
    tensors = load_file(path)
    with safe_open(path, "np") as f:
        meta = f.metadata()
    print(f"     {os.path.basename(path)}: metadata {meta}, tensors "
          + ", ".join(f"{k} {tuple(v.shape)}" for k, v in sorted(tensors.items())))
    ours, line = check.zeronn_logits(zrnn)
    check.compare(f"safetensors export read by NumPy ({line})", ours,
                  numpy_forward(meta["zeronn.net"], tensors, check.x))
    # The model file itself, read by docs/model-format.md's Python reader: the same values.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from read_zrnn import read_zrnn
    layers, values = read_zrnn(zrnn)
    order = [f"{k}{i}" for i in (1, 2) for k in ("W", "b", "gamma", "beta")] + ["W3", "b3"]
    order += [f"{k}{i}" for i in (1, 2) for k in ("running_mean", "running_var")]
    same = np.array_equal(values, np.concatenate([tensors[k].ravel() for k in order]))
    print(f"{'ok  ' if same else 'FAIL'} read_zrnn.py: {len(layers)} layer records, "
          f"{len(values)} values, equal to the safetensors export's")
    if not same:
        check.failures.append("read_zrnn.py")

    # Python -> zeronn, with the metadata and without it (then --net and --input).
    r = np.random.default_rng(3)
    mine = {"W1": r.standard_normal((784, 64)).astype(np.float32) * 0.05,
            "b1": r.standard_normal(64).astype(np.float32) * 0.1,
            "W2": r.standard_normal((64, 10)).astype(np.float32) * 0.2,
            "b2": r.standard_normal(10).astype(np.float32) * 0.1}
    want = numpy_forward("64,relu,10", mine, check.x)
    for name, meta, args in (
            ("st-python", {"zeronn.net": "64,relu,10,softmax", "zeronn.input": "784"}, []),
            ("st-python-bare", None, ["--net", "64,relu,10", "--input", "784"])):
        path = os.path.join(check.work, name + ".safetensors")
        save_file(mine, path, metadata=meta)
        zrnn = os.path.join(check.work, name + ".zrnn")
        print("     " + check.run("import", path, "--out", zrnn, *args).stdout.strip())
        ours, _ = check.zeronn_logits(zrnn)
        check.compare(f"safetensors written by Python ({name}) imported", ours, want)
    # A PyTorch-shaped W1 (out x in) is refused with a hint.
    path = os.path.join(check.work, "st-transposed.safetensors")
    save_file({**mine, "W1": np.ascontiguousarray(mine["W1"].T)}, path,
              metadata={"zeronn.net": "64,relu,10", "zeronn.input": "784"})
    check.refused_file("st-transposed", path, ["W1", "[64, 784]", "transpose"])


def own_data(check):
    """NumPy data for `zeronn train --data`: MNIST's bytes as uint8 .npz give the very run the
    IDX files give (the same training accuracies, bit for bit), and float64 features in an
    x.npy,t.npy pair train a net of their own sizes."""
    x = raw_mnist(check.data, "train-images-idx3-ubyte", 16, (-1, 28, 28))[:5000]
    t = raw_mnist(check.data, "train-labels-idx1-ubyte", 8, (-1,))[:5000]
    xt = raw_mnist(check.data, "t10k-images-idx3-ubyte", 16, (-1, 28, 28))[:1000]
    tt = raw_mnist(check.data, "t10k-labels-idx1-ubyte", 8, (-1,))[:1000]
    train, test = (os.path.join(check.work, f) for f in ("own-train.npz", "own-test.npz"))
    np.savez(train, x=x, t=t.astype(np.int64))
    np.savez_compressed(test, x=xt, t=tt)
    args = ["train", "--seed", "1", "--no-progress", "--iters", "500"]
    own = check.run(*args, "--data", train, "--test-data", test).stdout.split()
    idx = check.run(*args, "--data", check.data, "--train-size", "5000").stdout.split()
    same = own[0::2] == idx[0::2]
    print(f"{'ok  ' if same else 'FAIL'} MNIST as uint8 .npz: training accuracies "
          f"{' '.join(own[0::2][-3:])} (the IDX files': {' '.join(idx[0::2][-3:])})")
    if not same:
        check.failures.append("own data: npz")
    r = np.random.default_rng(5)
    labels = r.integers(0, 4, 2000)
    feats = r.standard_normal((2000, 6)) + np.eye(4, 6)[labels] * 3
    xp, tp = (os.path.join(check.work, f) for f in ("own-x.npy", "own-t.npy"))
    np.save(xp, feats)
    np.save(tp, labels)
    zrnn = os.path.join(check.work, "own.zrnn")
    r = check.run("train", "--data", f"{xp},{tp}", "--hidden", "20", "--iters", "400",
                  "--seed", "1", "--no-progress", "--save", zrnn)
    line = check.run("eval", "--model", zrnn, "--data", f"{xp},{tp}").stdout.strip()
    acc = float(line.split()[2])
    ok = "6-20-4" in r.stderr and acc > 0.85
    print(f"{'ok  ' if ok else 'FAIL'} float64 x.npy,t.npy: a 6-20-4 net, eval {line}")
    if not ok:
        check.failures.append("own data: npy pair")


def load_train(data):
    x = raw_mnist(data, "train-images-idx3-ubyte", 16, (-1, 784))
    t = raw_mnist(data, "train-labels-idx1-ubyte", 8, (-1,))
    return x.astype(np.float32) / 255.0, t.astype(np.int64)


def torch_trained(check, epochs, out):
    """Trains an MLP with BatchNorm and a small conv net in PyTorch (Adam, batch 100, one
    thread), exports them with torch.onnx.export, imports them into zeronn and compares the
    test accuracy on all 10 000 test images: PyTorch's own against `zeronn eval`'s."""
    import torch
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(1)
    x, t = load_train(check.data)
    xt, tt = torch.from_numpy(x), torch.from_numpy(t)
    test_x, test_t = load_test(check.data, 10000)
    nets = {
        "torch-trained-mlp": nn.Sequential(
            nn.Flatten(), nn.Linear(784, 100), nn.BatchNorm1d(100), nn.ReLU(), nn.Linear(100, 100),
            nn.BatchNorm1d(100), nn.ReLU(), nn.Dropout(0.2), nn.Linear(100, 10)),
        "torch-trained-convnet": nn.Sequential(
            nn.Conv2d(1, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 6 * 6, 64),
            nn.ReLU(), nn.Linear(64, 10)),
    }
    for name, m in nets.items():
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        for epoch in range(epochs):
            m.train()
            perm = torch.randperm(len(xt))
            for i in range(0, len(xt), 100):
                idx = perm[i:i + 100]
                loss = nn.functional.cross_entropy(m(xt[idx].view(-1, 1, 28, 28)), tt[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        m.eval()
        with torch.no_grad():
            pt = m(torch.from_numpy(test_x).view(-1, 1, 28, 28)).numpy()
        acc_pt = float((pt.argmax(1) == test_t).mean())
        path = os.path.join(out, name + ".onnx")
        kw = {"dynamo": False} if "dynamo" in torch.onnx.export.__code__.co_varnames else {}
        torch.onnx.export(m, torch.zeros(1, 1, 28, 28), path, opset_version=13,
                          input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}}, **kw)
        zrnn = os.path.join(out, name + ".zrnn")
        print("     " + check.run("import", path, "--out", zrnn).stdout.strip())
        line = check.run("eval", "--data", check.data, "--model", zrnn).stdout.strip()
        acc_z = float(line.split()[2])
        ok = acc_z == acc_pt
        print(f"{'ok  ' if ok else 'FAIL'} {name} ({epochs} epochs in PyTorch): test accuracy "
              f"PyTorch {acc_pt:.4f}, zeronn eval of the imported model {acc_z:.4f} ({line})")
        if not ok:
            check.failures.append(name)


def main():
    args = sys.argv[1:]
    n = 1000
    train_epochs = None
    if "--torch-train" in args:
        i = args.index("--torch-train")
        train_epochs = int(args[i + 1])
        del args[i:i + 2]
    if "--images" in args:
        i = args.index("--images")
        n = int(args[i + 1])
        del args[i:i + 2]
    zeronn, data, work = args
    os.makedirs(work, exist_ok=True)
    print(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, {n} MNIST test images")
    c = Check(zeronn, data, work, n)

    if train_epochs:
        torch_trained(c, train_epochs, work)
        sys.exit(f"FAILED: {', '.join(c.failures)}" if c.failures else 0)
    c.imported("mlp-gemm", mlp_gemm())
    c.imported("mlp-matmul-bn", mlp_matmul_bn())
    c.imported("cnn", cnn())
    torch_models(c)

    c.exported("two-layer-net", ["--iters", "300"])
    c.exported("mlp-bn-dropout", ["--hidden", "100,100", "--batch-norm", "--dropout", "0.2",
                                  "--optimizer", "adam", "--iters", "300"])
    c.exported("simple-convnet", ["--preset", "simple-convnet", "--iters", "30"])
    c.exported("conv-bn", ["--net", "conv8x3p1,bn,relu,pool2,50,relu,dropout0.3,10",
                           "--optimizer", "adam", "--iters", "60"])

    bad = mlp_gemm()
    bad.graph.node[1].op_type = "Tanh"
    c.refused("unsupported-op", bad, ["relu1", "Tanh", "not supported"])
    grouped = cnn()
    conv1 = next(n for n in grouped.graph.node if n.name == "conv1")
    conv1.attribute.append(helper.make_attribute("group", 2))
    c.refused("grouped-conv", grouped, ["conv1", "group"])
    whole = mlp_gemm().SerializeToString()
    c.refused("truncated", whole[: len(whole) // 2], ["not an ONNX model"])

    safetensors_round_trips(c)
    own_data(c)

    if c.failures:
        sys.exit(f"FAILED: {', '.join(c.failures)}")
    print("all ONNX and safetensors checks passed")


if __name__ == "__main__":
    main()
