"""The book's conv nets (ch07/simple_convnet.py, ch08/deep_convnet.py) in PyTorch, JAX, the
book's NumPy and ONNX Runtime: a training step (Adam lr 0.001, batch 100, the loss read back
as the book's Trainer does) and inference per image at batch 100 and batch 1. Written as a
user of each library would:

- torch: nn.Sequential of nn.Conv2d/nn.MaxPool2d/nn.Linear, F.cross_entropy, autograd,
  torch.optim.Adam, float32, torch.set_num_threads(N); inference under torch.inference_mode;
- jax: one jax.jit step (lax.conv_general_dilated in NCHW/OIHW, reduce_window max pooling,
  value_and_grad and the book's Adam on a pytree), one jax.jit predict;
- numpy: the book's common/layers.py Convolution (im2col, then a dot) and Pooling, float64 as
  the book runs it, Adam as its optimizer.py;
- onnxruntime: the PyTorch net exported to ONNX (opset 17), one session with one intra-op and
  one inter-op thread, sequential execution, all graph optimisations (inference only).

The weights are a fresh init of each net's shape (He for DeepConvNet, std 0.01 for
SimpleConvNet): speed does not depend on their values.

Usage: python convnets.py DATA_DIR {torch,jax,numpy,onnxruntime} --net {simple,deep}
           --what {step,infer,whole} [--threads N] [--seed N] [--steps N]
Prints one JSON object: step_s (median seconds of one training step), or infer100_s and
infer1_s (median seconds per image at batch 100 and at batch 1), or for `whole` (PyTorch only:
the book's 20-epoch run, train and test accuracy printed after each epoch's first step, as
`zeronn train` does) whole_s, train_s, eval_s and final_test_acc.
"""
import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np

from book_numpy import Affine, Relu, SoftmaxWithLoss
from optimizers import jax_adam
from mnist import load_mnist

BATCH = 100
# (filters, pad) of each 3×3 convolution of DeepConvNet; a pool after the 2nd, 4th, 6th.
DEEP_CONVS = [(16, 1), (16, 1), (32, 1), (32, 2), (64, 1), (64, 1)]


def median_time(f, n, warmup=2):
    for _ in range(warmup):
        f()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def batches(x, t, seed, n):
    rng = np.random.default_rng(seed)
    masks = [rng.integers(0, x.shape[0], BATCH) for _ in range(n)]
    return [(x[m], t[m]) for m in masks]


# ---------------------------------------------------------------- PyTorch (and ONNX export)

def torch_net(net, seed):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    if net == "simple":
        layers = [nn.Conv2d(1, 30, 5), nn.ReLU(), nn.MaxPool2d(2, 2), nn.Flatten(),
                  nn.Linear(30 * 12 * 12, 100), nn.ReLU(), nn.Linear(100, 10)]
        with torch.no_grad():
            for l in layers:
                if isinstance(l, (nn.Conv2d, nn.Linear)):
                    l.weight.normal_(0.0, 0.01)
                    l.bias.zero_()
    else:
        layers, c = [], 1
        for i, (f, pad) in enumerate(DEEP_CONVS):
            layers += [nn.Conv2d(c, f, 3, padding=pad), nn.ReLU()]
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2, 2))
            c = f
        layers += [nn.Flatten(), nn.Linear(64 * 4 * 4, 50), nn.ReLU(), nn.Dropout(0.5),
                   nn.Linear(50, 10), nn.Dropout(0.5)]
        with torch.no_grad():
            for l in layers:
                if isinstance(l, (nn.Conv2d, nn.Linear)):
                    fan_in = l.weight[0].numel()
                    l.weight.normal_(0.0, (2.0 / fan_in) ** 0.5)
                    l.bias.zero_()
    return nn.Sequential(*layers)


def run_torch(data, net, what, seed, steps, threads):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    (x_train, t_train), (x_test, _) = data
    model = torch_net(net, seed)
    if what == "step":
        opt = torch.optim.Adam(model.parameters(), lr=0.001)
        bs = [(torch.from_numpy(x.reshape(-1, 1, 28, 28)), torch.from_numpy(t))
              for x, t in batches(x_train, t_train, seed, 8)]
        model.train()
        it = iter(range(1 << 30))

        def step():
            x, t = bs[next(it) % len(bs)]
            loss = F.cross_entropy(model(x), t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()
        return {"step_s": median_time(step, steps)}
    if what == "whole":
        return torch_whole(model, data, seed)
    model.eval()
    x = x_test[:200].reshape(-1, 1, 28, 28)
    return infer_times(lambda xb: model(xb).argmax(dim=1), x, torch.inference_mode, torch.from_numpy)


def torch_whole(model, data, seed, epochs=20):
    """The book's whole run (train_convnet.py, train_deepnet.py): 20 epochs of 600 Adam steps of
    100 images drawn with replacement; after each epoch's first step, the accuracy on the whole
    training and test sets (as `zeronn train` does), and the test accuracy at the end."""
    import torch
    import torch.nn.functional as F

    (x_train, t_train), (x_test, t_test) = data
    xs, ts = torch.from_numpy(x_train.reshape(-1, 1, 28, 28)), torch.from_numpy(t_train)
    xt, tt = torch.from_numpy(x_test.reshape(-1, 1, 28, 28)), torch.from_numpy(t_test)
    opt = torch.optim.Adam(model.parameters(), lr=0.001)
    gen = torch.Generator().manual_seed(seed)
    per_epoch = xs.shape[0] // BATCH

    def accuracy(x, t):
        model.eval()
        with torch.inference_mode():
            right = sum(int((model(x[i:i + 1000]).argmax(dim=1) == t[i:i + 1000]).sum())
                        for i in range(0, x.shape[0], 1000))
        model.train()
        return right / x.shape[0]

    train_s = eval_s = 0.0
    model.train()
    for i in range(epochs * per_epoch):
        t0 = time.perf_counter()
        idx = torch.randint(0, xs.shape[0], (BATCH,), generator=gen)
        loss = F.cross_entropy(model(xs[idx]), ts[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
        t1 = time.perf_counter()
        train_s += t1 - t0
        if i % per_epoch == 0:
            print(accuracy(xs, ts), accuracy(xt, tt), flush=True)
            eval_s += time.perf_counter() - t1
    t1 = time.perf_counter()
    acc = accuracy(xt, tt)
    eval_s += time.perf_counter() - t1
    return {"whole_s": train_s + eval_s, "train_s": train_s, "eval_s": eval_s, "final_test_acc": acc}


def infer_times(predict, x, context=None, prep=lambda b: b):
    """Median seconds per image of predict at batch 100 and at batch 1, on the images x (200,
    NCHW, NumPy); prep turns a batch into the library's array, outside the timing."""
    import contextlib

    b100 = [prep(np.ascontiguousarray(x[i:i + 100])) for i in (0, 100)]
    b1 = [prep(np.ascontiguousarray(x[i:i + 1])) for i in range(200)]
    with (context() if context else contextlib.nullcontext()):
        it100, it1 = iter(range(1 << 30)), iter(range(1 << 30))
        t100 = median_time(lambda: predict(b100[next(it100) % 2]), 20) / 100
        t1 = median_time(lambda: predict(b1[next(it1) % 200]), 200)
    return {"infer100_s": t100, "infer1_s": t1}


def run_onnxruntime(data, net, seed):
    import onnxruntime as ort
    import torch

    (_, _), (x_test, _) = data
    model = torch_net(net, seed).eval()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "net.onnx")
        torch.onnx.export(model, torch.zeros(1, 1, 28, 28), path, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
                          opset_version=17, dynamo=False)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    x = x_test[:200].reshape(-1, 1, 28, 28)
    return infer_times(lambda xb: sess.run(None, {"x": xb})[0].argmax(axis=1), x)


# ---------------------------------------------------------------- JAX

def run_jax(data, net, what, seed, steps):
    import jax
    import jax.numpy as jnp
    from jax import lax

    (x_train, t_train), (x_test, _) = data
    key = jax.random.PRNGKey(seed)

    def normal(shape, std):
        nonlocal key
        key, sub = jax.random.split(key)
        return jax.random.normal(sub, shape, jnp.float32) * std

    if net == "simple":
        convs = [(normal((30, 1, 5, 5), 0.01), jnp.zeros(30), 0)]
        affines = [(normal((4320, 100), 0.01), jnp.zeros(100)), (normal((100, 10), 0.01), jnp.zeros(10))]
        pools_after = {0}
    else:
        convs, c = [], 1
        for f, pad in DEEP_CONVS:
            convs.append((normal((f, c, 3, 3), (2.0 / (c * 9)) ** 0.5), jnp.zeros(f), pad))
            c = f
        affines = [(normal((1024, 50), (2.0 / 1024) ** 0.5), jnp.zeros(50)),
                   (normal((50, 10), (2.0 / 50) ** 0.5), jnp.zeros(10))]
        pools_after = {1, 3, 5}
    pads = [p for _, _, p in convs]
    params = ([(w, b) for w, b, _ in convs], affines)

    def forward(params, x, key=None):
        cw, aw = params
        for i, ((w, b), pad) in enumerate(zip(cw, pads)):
            x = lax.conv_general_dilated(x, w, (1, 1), [(pad, pad), (pad, pad)],
                                         dimension_numbers=("NCHW", "OIHW", "NCHW"))
            x = jax.nn.relu(x + b[None, :, None, None])
            if i in pools_after:
                x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        x = x.reshape(x.shape[0], -1)
        for j, (w, b) in enumerate(aw):
            x = x @ w + b
            if j == 0:
                x = jax.nn.relu(x)
            if net == "deep" and key is not None:  # Dropout 0.5 after both Affines (training)
                key, sub = jax.random.split(key)
                x = jnp.where(jax.random.bernoulli(sub, 0.5, x.shape), x * 2.0, 0.0)
        return x

    if what == "infer":
        predict = jax.jit(lambda p, x: jnp.argmax(forward(p, x), axis=1))
        x = x_test[:200].reshape(-1, 1, 28, 28)
        # Compile both batch sizes outside the timing.
        jax.block_until_ready(predict(params, jnp.asarray(x[:100])))
        jax.block_until_ready(predict(params, jnp.asarray(x[:1])))
        return infer_times(lambda xb: jax.block_until_ready(predict(params, xb)), x, prep=jnp.asarray)

    def loss_fn(params, x, t, key):
        logp = jax.nn.log_softmax(forward(params, x, key))
        return -jnp.mean(jnp.take_along_axis(logp, t[:, None], axis=1))

    @jax.jit
    def step(params, m, v, it, x, t, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, t, key)
        params, m, v, it = jax_adam(params, m, v, it, grads)
        return params, m, v, it, loss

    bs = [(jnp.asarray(x.reshape(-1, 1, 28, 28)), jnp.asarray(t))
          for x, t in batches(x_train, t_train, seed, 8)]
    zeros = jax.tree.map(jnp.zeros_like, params)
    state = [params, zeros, zeros, jnp.float32(0.0)]
    n = iter(range(1 << 30))

    def one():
        i = next(n)
        x, t = bs[i % len(bs)]
        *new, loss = step(*state, x, t, jax.random.PRNGKey(i))
        state[:] = new
        float(loss)
    return {"step_s": median_time(one, steps)}


# ---------------------------------------------------------------- the book's NumPy

def im2col(x, fh, fw, stride, pad):
    n, c, h, w = x.shape
    oh, ow = (h + 2 * pad - fh) // stride + 1, (w + 2 * pad - fw) // stride + 1
    img = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)], "constant")
    col = np.zeros((n, c, fh, fw, oh, ow))
    for y in range(fh):
        y_max = y + stride * oh
        for x_ in range(fw):
            x_max = x_ + stride * ow
            col[:, :, y, x_, :, :] = img[:, :, y:y_max:stride, x_:x_max:stride]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(n * oh * ow, -1)


def col2im(col, shape, fh, fw, stride, pad):
    n, c, h, w = shape
    oh, ow = (h + 2 * pad - fh) // stride + 1, (w + 2 * pad - fw) // stride + 1
    col = col.reshape(n, oh, ow, c, fh, fw).transpose(0, 3, 4, 5, 1, 2)
    img = np.zeros((n, c, h + 2 * pad + stride - 1, w + 2 * pad + stride - 1))
    for y in range(fh):
        y_max = y + stride * oh
        for x_ in range(fw):
            x_max = x_ + stride * ow
            img[:, :, y:y_max:stride, x_:x_max:stride] += col[:, :, y, x_, :, :]
    return img[:, :, pad:h + pad, pad:w + pad]


class Convolution:
    """common/layers.py's Convolution."""

    def __init__(self, W, b, pad):
        self.W, self.b, self.pad = W, b, pad

    def forward(self, x):
        fn, _, fh, fw = self.W.shape
        n, _, h, w = x.shape
        oh, ow = h + 2 * self.pad - fh + 1, w + 2 * self.pad - fw + 1
        self.x, self.col = x, im2col(x, fh, fw, 1, self.pad)
        self.col_W = self.W.reshape(fn, -1).T
        out = np.dot(self.col, self.col_W) + self.b
        return out.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)

    def backward(self, dout):
        fn, c, fh, fw = self.W.shape
        dout = dout.transpose(0, 2, 3, 1).reshape(-1, fn)
        self.db = np.sum(dout, axis=0)
        self.dW = np.dot(self.col.T, dout).transpose(1, 0).reshape(fn, c, fh, fw)
        return col2im(np.dot(dout, self.col_W.T), self.x.shape, fh, fw, 1, self.pad)


class Pooling:
    """common/layers.py's Pooling, 2×2 stride 2."""

    def forward(self, x):
        n, c, h, w = x.shape
        oh, ow = h // 2, w // 2
        col = im2col(x, 2, 2, 2, 0).reshape(-1, 4)
        self.x, self.arg_max = x, np.argmax(col, axis=1)
        return np.max(col, axis=1).reshape(n, oh, ow, c).transpose(0, 3, 1, 2)

    def backward(self, dout):
        dout = dout.transpose(0, 2, 3, 1)
        dmax = np.zeros((dout.size, 4))
        dmax[np.arange(self.arg_max.size), self.arg_max.flatten()] = dout.flatten()
        dmax = dmax.reshape(dout.shape + (4,))
        dcol = dmax.reshape(dmax.shape[0] * dmax.shape[1] * dmax.shape[2], -1)
        return col2im(dcol, self.x.shape, 2, 2, 2, 0)


class Dropout:
    """The book's Dropout (train_flg: mask; else scale by 1 - ratio)."""

    def __init__(self, ratio):
        self.ratio, self.train = ratio, True

    def forward(self, x):
        if self.train:
            self.mask = np.random.rand(*x.shape) > self.ratio
            return x * self.mask
        return x * (1.0 - self.ratio)

    def backward(self, dout):
        return dout * self.mask


def numpy_layers(net, seed):
    np.random.seed(seed)
    if net == "simple":
        return [Convolution(0.01 * np.random.randn(30, 1, 5, 5), np.zeros(30), 0), Relu(), Pooling(),
                Affine(0.01 * np.random.randn(4320, 100), np.zeros(100)), Relu(),
                Affine(0.01 * np.random.randn(100, 10), np.zeros(10))]
    layers, c = [], 1
    for i, (f, pad) in enumerate(DEEP_CONVS):
        layers += [Convolution(np.sqrt(2.0 / (c * 9)) * np.random.randn(f, c, 3, 3), np.zeros(f), pad), Relu()]
        if i % 2 == 1:
            layers.append(Pooling())
        c = f
    return layers + [Affine(np.sqrt(2.0 / 1024) * np.random.randn(1024, 50), np.zeros(50)), Relu(),
                     Dropout(0.5), Affine(np.sqrt(2.0 / 50) * np.random.randn(50, 10), np.zeros(10)),
                     Dropout(0.5)]


def run_numpy(data, net, what, seed, steps):
    (x_train, t_train), (x_test, _) = data
    layers = numpy_layers(net, seed)

    def predict(x, train):
        for l in layers:
            if isinstance(l, Dropout):
                l.train = train
            x = l.forward(x)
        return x

    if what == "infer":
        x = x_test[:200].reshape(-1, 1, 28, 28).astype(np.float64)
        return infer_times(lambda xb: predict(xb, False).argmax(axis=1), x)

    last = SoftmaxWithLoss()
    trained = [l for l in layers if isinstance(l, (Convolution, Affine))]
    params = [p for l in trained for p in (l.W, l.b)]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    bs = [(x.reshape(-1, 1, 28, 28).astype(np.float64), t) for x, t in batches(x_train, t_train, seed, 8)]
    n = iter(range(1 << 30))

    def step():
        it = next(n)
        x, t = bs[it % len(bs)]
        loss = last.forward(predict(x, True), t)
        d = last.backward()
        for l in reversed(layers):
            d = l.backward(d)
        lr_t = 0.001 * np.sqrt(1.0 - 0.999 ** (it + 1)) / (1.0 - 0.9 ** (it + 1))
        grads = [g for l in trained for g in (l.dW, l.db)]
        for p, g, mm, vv in zip(params, grads, m, v):
            mm += (1 - 0.9) * (g - mm)
            vv += (1 - 0.999) * (g ** 2 - vv)
            p -= lr_t * mm / (np.sqrt(vv) + 1e-7)
        return loss
    return {"step_s": median_time(step, steps, warmup=1)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("impl", choices=["torch", "jax", "numpy", "onnxruntime"])
    ap.add_argument("--net", choices=["simple", "deep"], required=True)
    ap.add_argument("--what", choices=["step", "infer", "whole"], required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20)
    a = ap.parse_args()
    data = load_mnist(a.data)
    if a.what == "whole" and a.impl != "torch":
        ap.error("--what whole: torch only")
    if a.impl == "torch":
        r = run_torch(data, a.net, a.what, a.seed, a.steps, a.threads)
    elif a.impl == "jax":
        r = run_jax(data, a.net, a.what, a.seed, a.steps)
    elif a.impl == "numpy":
        r = run_numpy(data, a.net, a.what, a.seed, a.steps)
    else:
        if a.what != "infer":
            ap.error("onnxruntime runs inference only")
        r = run_onnxruntime(data, a.net, a.seed)
    print(json.dumps(r))
