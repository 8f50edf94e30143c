"""The book's chapter 5 run in JAX, written as a JAX user would, with `jit`: the same net
(784-50-10, ReLU, softmax with cross-entropy), the book's init (N(0, 0.01²), zero bias),
plain SGD with lr 0.1, batch 100 sampled with replacement, 10 000 iterations, accuracy on the
full train and test sets every 600 iterations, float32, the loss of every step kept.

Two ways to drive it, JAX's two best:
- `whole`: one jitted step per Python call (the loss read back each step, as the book does);
- `whole-fori`: one jitted call per epoch of 600 steps (between two evaluations), the steps
  in `lax.fori_loop`, the epoch's mini-batch indices passed in and its losses returned as an
  array.

Usage: python book_jax.py DATA_DIR {whole,whole-fori,micro} [--seed N]
Run it on one thread: XLA_FLAGS="--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1" and the process pinned to one core (compare.py does both).
Prints one JSON object with the timings (seconds).
"""
import argparse
import json
import time

import numpy as np

import jax
import jax.numpy as jnp

from mnist import load_mnist
from timing import median_time

ITERS, BATCH, LR, EPOCH = 10000, 100, 0.1, 600


def init(seed):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.normal(0.0, 0.01, (784, 50)), jnp.float32), jnp.zeros(50, jnp.float32),
            jnp.asarray(rng.normal(0.0, 0.01, (50, 10)), jnp.float32), jnp.zeros(10, jnp.float32))


def predict(p, x):
    w1, b1, w2, b2 = p
    return jax.nn.relu(x @ w1 + b1) @ w2 + b2


def loss_fn(p, x, t):
    logp = jax.nn.log_softmax(predict(p, x))
    return -jnp.mean(jnp.take_along_axis(logp, t[:, None], axis=1))


def sgd(p, x, t):
    loss, g = jax.value_and_grad(loss_fn)(p, x, t)
    return tuple(w - LR * d for w, d in zip(p, g)), loss


def make(xs, ts):
    """The jitted functions over the training set held on the device (as arrays)."""

    @jax.jit
    def step(p, idx):
        return sgd(p, xs[idx], ts[idx])

    @jax.jit
    def epoch(p, idx, n):  # idx: EPOCH × batch, of which the first n rows are run
        def body(i, carry):
            p, losses = carry
            p, loss = sgd(p, xs[idx[i]], ts[idx[i]])
            return p, losses.at[i].set(loss)

        return jax.lax.fori_loop(0, n, body, (p, jnp.zeros(idx.shape[0], jnp.float32)))

    @jax.jit
    def correct(p, x, t):
        return jnp.sum(jnp.argmax(predict(p, x), axis=1) == t)

    return step, epoch, correct


def whole(data, seed, fori):
    (x_train, t_train), (x_test, t_test) = data
    xs, ts, xt, tt = (jnp.asarray(a) for a in (x_train, t_train, x_test, t_test))
    step, epoch, correct = make(xs, ts)
    rng = np.random.default_rng(seed)
    p = init(seed)
    # Compile outside the timed run: one call of each on the starting state.
    warm = rng.integers(0, len(x_train), (EPOCH, BATCH))
    jax.block_until_ready((step(p, warm[0]), epoch(p, warm, 1), correct(p, xs, ts), correct(p, xt, tt)))

    def evaluate(p):
        return (int(correct(p, xs, ts)) / len(x_train), int(correct(p, xt, tt)) / len(x_test))

    losses, train_s, eval_s = [], 0.0, 0.0
    start = time.perf_counter()
    i = 0
    while i < ITERS:
        # The book evaluates after iterations 0, 600, 1200, …: an epoch of steps ends there.
        n = 1 if i == 0 else min(EPOCH, ITERS - i)
        idx = rng.integers(0, len(x_train), (n, BATCH))
        t0 = time.perf_counter()
        if fori:
            full = np.zeros((EPOCH, BATCH), idx.dtype)
            full[:n] = idx
            p, ls = epoch(p, full, n)
            losses.extend(np.asarray(ls)[:n].tolist())
        else:
            for k in range(n):
                p, loss = step(p, idx[k])
                losses.append(float(loss))
        train_s += time.perf_counter() - t0
        if (i + n - 1) % EPOCH == 0:
            t0 = time.perf_counter()
            train_acc, test_acc = evaluate(p)
            eval_s += time.perf_counter() - t0
        i += n
    total = time.perf_counter() - start
    return {"whole_s": total, "train_s": train_s, "eval_s": eval_s,
            "final_train_acc": train_acc, "final_test_acc": test_acc, "last_loss": losses[-1]}


def micro(data, seed):
    (x_train, t_train), (x_test, t_test) = data
    xs, ts, xt, tt = (jnp.asarray(a) for a in (x_train, t_train, x_test, t_test))
    step, _, correct = make(xs, ts)
    p = init(seed)
    idx = jnp.arange(BATCH)
    predict1 = jax.jit(predict)
    x1 = xt[:1]
    return {"step_s": median_time(lambda: float(step(p, idx)[1]), 7, 200),
            "eval_pass_s": median_time(lambda: (int(correct(p, xs, ts)), int(correct(p, xt, tt))), 7, 1),
            "forward1_s": median_time(lambda: predict1(p, x1).block_until_ready(), 7, 2000)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("mode", choices=["whole", "whole-fori", "micro"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="ignored: JAX runs on one thread here")
    a = ap.parse_args()
    d = load_mnist(a.data)
    print(json.dumps(micro(d, a.seed) if a.mode == "micro" else whole(d, a.seed, a.mode == "whole-fori")))
