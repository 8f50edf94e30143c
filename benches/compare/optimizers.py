"""The `optimizers` workload of the book's chapter 6 (optimizer_compare_mnist.py, its Adam
net) in PyTorch, JAX and the book's NumPy: 784-100-100-100-100-10 with ReLU, He initial
weights, zero biases, Adam (lr 0.001, β1 0.9, β2 0.999), batch 128 sampled with replacement,
2000 iterations, the loss of each step read back (as the book records it), then the test
accuracy. Written as a user of each library would:

- torch: nn.Sequential of nn.Linear/nn.ReLU, F.cross_entropy, autograd, torch.optim.Adam
  (its defaults but lr), float32, torch.set_num_threads(N);
- jax: one jax.jit step (value_and_grad and the book's Adam update, on a pytree of float32
  arrays, the batch indexed inside the step), the loss read with float();
- numpy: the book's MultiLayerNet and Adam written out as its common/ code does them,
  float64 (it records the loss after the update, a second forward pass, as the book does).

Usage: python optimizers.py DATA_DIR {torch,jax,numpy} [--threads N] [--seed N] [--iters N]
Prints one JSON object: train_s (the 2000 iterations), step_s (per iteration),
final_test_acc, last100_loss (mean of the last 100 losses).
"""
import argparse
import json
import os
import sys
import time

import numpy as np

from mnist import load_mnist

SIZES = [784, 100, 100, 100, 100, 10]
BATCH = 128


def run_torch(data, seed, iters, threads):
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.set_num_threads(threads)
    (x_train, t_train), (x_test, t_test) = data
    x_train, t_train = torch.from_numpy(x_train), torch.from_numpy(t_train)
    x_test, t_test = torch.from_numpy(x_test), torch.from_numpy(t_test)
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(SIZES, SIZES[1:])):
        lin = nn.Linear(a, b)
        with torch.no_grad():
            lin.weight.normal_(0.0, (2.0 / a) ** 0.5)
            lin.bias.zero_()
        layers.append(lin)
        if i + 2 < len(SIZES):
            layers.append(nn.ReLU())
    model = nn.Sequential(*layers)
    opt = torch.optim.Adam(model.parameters(), lr=0.001, betas=(0.9, 0.999))
    gen = torch.Generator().manual_seed(seed)
    losses = []
    t0 = time.perf_counter()
    for _ in range(iters):
        idx = torch.randint(0, x_train.shape[0], (BATCH,), generator=gen)
        loss = F.cross_entropy(model(x_train[idx]), t_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    train_s = time.perf_counter() - t0
    with torch.no_grad():
        acc = (model(x_test).argmax(dim=1) == t_test).float().mean().item()
    return train_s, acc, losses


def jax_adam(params, m, v, it, grads, lr=0.001):
    """The book's Adam (common/optimizer.py: β1 0.9, β2 0.999, the bias-corrected lr_t, 1e-7)
    on JAX pytrees, for use inside a jitted step: the new params, m, v and step count."""
    import jax
    import jax.numpy as jnp

    it = it + 1.0
    lr_t = lr * jnp.sqrt(1.0 - 0.999 ** it) / (1.0 - 0.9 ** it)
    m = jax.tree.map(lambda m, g: m + (1 - 0.9) * (g - m), m, grads)
    v = jax.tree.map(lambda v, g: v + (1 - 0.999) * (g * g - v), v, grads)
    params = jax.tree.map(lambda p, m, v: p - lr_t * m / (jnp.sqrt(v) + 1e-7), params, m, v)
    return params, m, v, it


def run_jax(data, seed, iters):
    import jax
    import jax.numpy as jnp

    (x_train, t_train), (x_test, t_test) = data
    xs, ts = jnp.asarray(x_train), jnp.asarray(t_train)
    key = jax.random.PRNGKey(seed)
    params = []
    for a, b in zip(SIZES, SIZES[1:]):
        key, sub = jax.random.split(key)
        params.append((jax.random.normal(sub, (a, b), jnp.float32) * (2.0 / a) ** 0.5,
                       jnp.zeros((b,), jnp.float32)))

    def predict(params, x):
        for w, b in params[:-1]:
            x = jax.nn.relu(x @ w + b)
        w, b = params[-1]
        return x @ w + b

    def loss_fn(params, x, t):
        logp = jax.nn.log_softmax(predict(params, x))
        return -jnp.mean(jnp.take_along_axis(logp, t[:, None], axis=1))

    @jax.jit
    def step(params, m, v, it, idx):
        loss, grads = jax.value_and_grad(loss_fn)(params, xs[idx], ts[idx])
        params, m, v, it = jax_adam(params, m, v, it, grads)
        return params, m, v, it, loss

    zeros = jax.tree.map(jnp.zeros_like, params)
    m, v, it = zeros, zeros, jnp.float32(0.0)
    rng = np.random.default_rng(seed)
    # Compile outside the timed loop (on a copy of the state).
    jax.block_until_ready(step(params, m, v, it, rng.integers(0, xs.shape[0], BATCH)))
    losses = []
    t0 = time.perf_counter()
    for _ in range(iters):
        idx = rng.integers(0, xs.shape[0], BATCH)
        params, m, v, it, loss = step(params, m, v, it, idx)
        losses.append(float(loss))
    train_s = time.perf_counter() - t0
    acc = float(jnp.mean(jnp.argmax(predict(params, jnp.asarray(x_test)), axis=1) == jnp.asarray(t_test)))
    return train_s, acc, losses


def run_numpy(data, seed, iters):
    """The book's MultiLayerNet and Adam written out in NumPy float64, as common/ does it:
    Affine layers x·W + b, ReLU, softmax with cross-entropy (+1e-7 in the log), backprop,
    Adam with the bias-corrected lr_t."""
    (x_train, t_train), (x_test, t_test) = data
    x_train, x_test = x_train.astype(np.float64), x_test.astype(np.float64)
    np.random.seed(seed)
    W = [np.sqrt(2.0 / a) * np.random.randn(a, b) for a, b in zip(SIZES, SIZES[1:])]
    B = [np.zeros(b) for b in SIZES[1:]]
    params = W + B
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]

    def forward(x):
        hs = [x]
        for w, b in zip(W[:-1], B[:-1]):
            hs.append(np.maximum(hs[-1] @ w + b, 0))
        return hs, hs[-1] @ W[-1] + B[-1]

    def loss_of(scores, t):
        e = np.exp(scores - scores.max(axis=1, keepdims=True))
        y = e / e.sum(axis=1, keepdims=True)
        return y, -np.sum(np.log(y[np.arange(len(t)), t] + 1e-7)) / len(t)

    losses = []
    t0 = time.perf_counter()
    for it in range(1, iters + 1):
        mask = np.random.choice(x_train.shape[0], BATCH)
        x, t = x_train[mask], t_train[mask]
        hs, scores = forward(x)
        y, _ = loss_of(scores, t)
        d = y.copy()
        d[np.arange(BATCH), t] -= 1
        d /= BATCH
        gW, gB = [None] * len(W), [None] * len(W)
        for k in range(len(W) - 1, -1, -1):
            gW[k], gB[k] = hs[k].T @ d, d.sum(axis=0)
            if k:
                d = (d @ W[k].T) * (hs[k] > 0)
        lr_t = 0.001 * np.sqrt(1.0 - 0.999 ** it) / (1.0 - 0.9 ** it)
        for p, g, mm, vv in zip(params, gW + gB, m, v):
            mm += (1 - 0.9) * (g - mm)
            vv += (1 - 0.999) * (g ** 2 - vv)
            p -= lr_t * mm / (np.sqrt(vv) + 1e-7)
        losses.append(loss_of(forward(x)[1], t)[1])
    train_s = time.perf_counter() - t0
    acc = float(np.mean(np.argmax(forward(x_test)[1], axis=1) == t_test))
    return train_s, acc, losses


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("impl", choices=["torch", "jax", "numpy"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--iters", type=int, default=2000)
    a = ap.parse_args()
    data = load_mnist(a.data)
    if a.impl == "torch":
        train_s, acc, losses = run_torch(data, a.seed, a.iters, a.threads)
    elif a.impl == "jax":
        train_s, acc, losses = run_jax(data, a.seed, a.iters)
    else:
        train_s, acc, losses = run_numpy(data, a.seed, a.iters)
    tail = losses[-100:]
    print(json.dumps({"train_s": train_s, "step_s": train_s / a.iters, "final_test_acc": acc,
                      "last100_loss": sum(tail) / len(tail)}))
