"""MNIST IDX files for the PyTorch reference scripts (torch_mlp.py,
torch_cnn.py): read one file (gzip or not) into numpy, and find the training
files in the usual places."""
import gzip
import os
import struct

import numpy as np


def read_idx(path):
    opener = gzip.open if open(path, "rb").read(2) == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, type_code, rank = struct.unpack(">HBB", data[:4])
    if zero != 0 or type_code != 0x08:
        raise SystemExit(f"{path}: not a uint8 IDX file")
    dims = struct.unpack(">" + "I" * rank, data[4:4 + 4 * rank])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def find_mnist(data_dir):
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [data_dir] if data_dir else []
    candidates += ["data/mnist", os.path.join(here, "..", "data", "mnist"),
                   os.path.join(here, "..", "..", "shared", "data", "mnist"),
                   os.path.join(here, "..", "shared", "data", "mnist")]
    for d in candidates:
        for suffix in ("", ".gz"):
            p = os.path.join(d, "train-images-idx3-ubyte" + suffix)
            if os.path.exists(p):
                return p, os.path.join(d, "train-labels-idx1-ubyte" + suffix)
    return None, None
