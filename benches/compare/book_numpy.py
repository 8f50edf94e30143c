"""The book's chapter 5 run (two_layer_net.py + train_neuralnet.py), written out in NumPy as
the book does it: float64 parameters, Affine/Relu/SoftmaxWithLoss layers, backprop, SGD,
the loss recomputed after each update, accuracy on the full train and test sets per epoch.

Usage: python book_numpy.py DATA_DIR {whole,micro} [--seed N]
Prints one JSON object with the timings (seconds).
"""
import argparse
import json
import time

import numpy as np

from mnist import load_mnist
from timing import median_time


def softmax(x):
    x = x - np.max(x, axis=-1, keepdims=True)
    return np.exp(x) / np.sum(np.exp(x), axis=-1, keepdims=True)


def cross_entropy_error(y, t):
    batch_size = y.shape[0]
    return -np.sum(np.log(y[np.arange(batch_size), t] + 1e-7)) / batch_size


class Affine:
    def __init__(self, W, b):
        self.W, self.b = W, b

    def forward(self, x):
        # common/layers.py: an image batch (N, C, H, W) is flattened to rows first.
        self.original_x_shape = x.shape
        self.x = x.reshape(x.shape[0], -1)
        return np.dot(self.x, self.W) + self.b

    def backward(self, dout):
        self.dW = np.dot(self.x.T, dout)
        self.db = np.sum(dout, axis=0)
        return np.dot(dout, self.W.T).reshape(*self.original_x_shape)


class Relu:
    def forward(self, x):
        self.mask = x <= 0
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout):
        dout[self.mask] = 0
        return dout


class SoftmaxWithLoss:
    def forward(self, x, t):
        self.t = t
        self.y = softmax(x)
        return cross_entropy_error(self.y, t)

    def backward(self, dout=1):
        batch_size = self.t.shape[0]
        dx = self.y.copy()
        dx[np.arange(batch_size), self.t] -= 1
        return dx / batch_size


class TwoLayerNet:
    def __init__(self, input_size, hidden_size, output_size, weight_init_std=0.01):
        self.params = {
            "W1": weight_init_std * np.random.randn(input_size, hidden_size),
            "b1": np.zeros(hidden_size),
            "W2": weight_init_std * np.random.randn(hidden_size, output_size),
            "b2": np.zeros(output_size),
        }
        self.layers = [Affine(self.params["W1"], self.params["b1"]), Relu(),
                       Affine(self.params["W2"], self.params["b2"])]
        self.last_layer = SoftmaxWithLoss()

    def predict(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def loss(self, x, t):
        return self.last_layer.forward(self.predict(x), t)

    def accuracy(self, x, t):
        return np.sum(np.argmax(self.predict(x), axis=1) == t) / float(x.shape[0])

    def gradient(self, x, t):
        self.loss(x, t)
        dout = self.last_layer.backward(1)
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        a1, a2 = self.layers[0], self.layers[2]
        return {"W1": a1.dW, "b1": a1.db, "W2": a2.dW, "b2": a2.db}


def whole(data, seed):
    (x_train, t_train), (x_test, t_test) = data
    np.random.seed(seed)
    network = TwoLayerNet(784, 50, 10)
    iters_num, batch_size, learning_rate = 10000, 100, 0.1
    train_size = x_train.shape[0]
    iter_per_epoch = max(train_size // batch_size, 1)
    train_time = eval_time = 0.0
    start = time.perf_counter()
    for i in range(iters_num):
        t0 = time.perf_counter()
        batch_mask = np.random.choice(train_size, batch_size)
        x_batch, t_batch = x_train[batch_mask], t_train[batch_mask]
        grad = network.gradient(x_batch, t_batch)
        for key in ("W1", "b1", "W2", "b2"):
            network.params[key] -= learning_rate * grad[key]
        network.loss(x_batch, t_batch)
        train_time += time.perf_counter() - t0
        if i % iter_per_epoch == 0:
            t0 = time.perf_counter()
            train_acc = network.accuracy(x_train, t_train)
            test_acc = network.accuracy(x_test, t_test)
            eval_time += time.perf_counter() - t0
    total = time.perf_counter() - start
    return {"whole_s": total, "train_s": train_time, "eval_s": eval_time,
            "final_train_acc": train_acc, "final_test_acc": test_acc}


def micro(data, seed):
    (x_train, t_train), (x_test, t_test) = data
    np.random.seed(seed)
    network = TwoLayerNet(784, 50, 10)
    x_batch, t_batch = x_train[:100], t_train[:100]

    def step():
        grad = network.gradient(x_batch, t_batch)
        for key in ("W1", "b1", "W2", "b2"):
            network.params[key] -= 0.1 * grad[key]
        network.loss(x_batch, t_batch)

    def evaluate():
        network.accuracy(x_train, t_train)
        network.accuracy(x_test, t_test)

    x1 = x_test[:1]
    return {"step_s": median_time(step, 7, 50), "eval_pass_s": median_time(evaluate, 5, 1),
            "forward1_s": median_time(lambda: network.predict(x1), 7, 2000)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("mode", choices=["whole", "micro"])
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    d = load_mnist(a.data)
    print(json.dumps(whole(d, a.seed) if a.mode == "whole" else micro(d, a.seed)))
