"""MNIST from the official IDX files (raw or .gz), as the book's load_mnist(normalize=True)."""
import gzip
import os
import struct

import numpy as np


def _open(path):
    with open(path, "rb") as f:
        head = f.read(2)
    return gzip.open(path, "rb") if head == b"\x1f\x8b" else open(path, "rb")


def _find(directory, stem):
    for name in (stem + ".gz", stem):
        p = os.path.join(directory, name)
        if os.path.isfile(p):
            return p
    raise FileNotFoundError(f"{stem}[.gz] not found in {directory}")


def _images(path):
    with _open(path) as f:
        magic, n, rows, cols = struct.unpack(">IIII", f.read(16))
        assert magic == 0x803, f"{path}: bad magic {magic:#x}"
        data = np.frombuffer(f.read(), dtype=np.uint8)
    assert data.size == n * rows * cols, f"{path}: truncated"
    return data.reshape(n, rows * cols)


def _labels(path):
    with _open(path) as f:
        magic, n = struct.unpack(">II", f.read(8))
        assert magic == 0x801, f"{path}: bad magic {magic:#x}"
        data = np.frombuffer(f.read(), dtype=np.uint8)
    assert data.size == n, f"{path}: truncated"
    return data


def load_mnist(directory):
    """((x_train, t_train), (x_test, t_test)): pixels float32 in [0, 1], labels as indices."""
    x_train = _images(_find(directory, "train-images-idx3-ubyte")).astype(np.float32) / 255.0
    t_train = _labels(_find(directory, "train-labels-idx1-ubyte")).astype(np.int64)
    x_test = _images(_find(directory, "t10k-images-idx3-ubyte")).astype(np.float32) / 255.0
    t_test = _labels(_find(directory, "t10k-labels-idx1-ubyte")).astype(np.int64)
    return (x_train, t_train), (x_test, t_test)
