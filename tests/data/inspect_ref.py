#!/usr/bin/env python3
"""numpy / TensorFlow side of tests/data/data_tools_interop_test.cpp.

  inspect_ref.py inspect DIR SHARED_DATA
      Writes files with numpy and TensorFlow under DIR (pickle_gen.py's pickles,
      tfrecord_gen.py's record files, IDX files of every type), then writes
      DIR/ref.jsonl: one line per file (those and every file under SHARED_DATA)
      {"path", "encoding", "error": bool, "ref": JSON} where ref is what
      `cumulus-data inspect` must print, computed here with numpy / TensorFlow
      (error: Python cannot load the file either).
  inspect_ref.py records DIR
      DIR holds mnist IDX files (raw) and out_<none|gzip|zlib>_<v>/ written by
      cumulus-records with --validation-size v; reads each records file with
      tf.data.TFRecordDataset + tf.io.parse_single_example (the tutorial's
      feature spec) and checks images, labels and split sizes against the IDX.

Exit status: 0 on success, 1 on a mismatch, 77 when numpy/tensorflow are missing.
"""
import gzip
import json
import math
import os
import pickle
import pickletools
import struct
import sys

try:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf
except ImportError as e:
    print(f"SKIPPED: cannot import numpy/tensorflow with {sys.executable}: {e}")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


CRC_TABLE = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    t = CRC_TABLE
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def number(x):
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


# ---- IDX

IDX_TYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def idx_ref(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    typ, rank = data[2], data[3]
    dims = list(struct.unpack(">%dI" % rank, data[4:4 + 4 * rank]))
    a = np.frombuffer(data[4 + 4 * rank:], dtype=IDX_TYPES[typ]).reshape(dims)
    return {"format": "idx", "dtype": a.dtype.str, "shape": dims, "sum": number(exact_sum(a))}


def write_idx(path, a, gz):
    code = {v.lstrip(">"): k for k, v in IDX_TYPES.items()}[a.dtype.str.lstrip("<>|")]
    big = a.astype(a.dtype.newbyteorder(">")) if a.dtype.itemsize > 1 else a
    data = bytes([0, 0, code, a.ndim]) + struct.pack(">%dI" % a.ndim, *a.shape) + big.tobytes()
    with open(path, "wb") as f:
        f.write(gzip.compress(data) if gz else data)


# ---- pickle

def exact_sum(a):
    """The float64 sum of the elements, correctly rounded (numpy's pairwise sum is not)."""
    a = np.asarray(a)
    if a.dtype.kind in "biu" and a.dtype.itemsize <= 4:
        return float(a.sum(dtype=np.int64))
    f = a.astype(np.float64).ravel()
    if not np.all(np.isfinite(f)):
        return float(f.sum())  # NaN or infinite either way
    return math.fsum(f.tolist())


class FileOrderArray(np.ndarray):
    """An array made by _reconstruct that remembers the dtype the file gave it:
    numpy's __setstate__ makes a non-native byte order native, and
    `cumulus-data inspect` reports the file's."""

    def __setstate__(self, state):
        self.file_dtype = state[2]
        super().__setstate__(state)


def _reconstruct_keeping_order(cls, shape, dtype):
    return np.ndarray.__new__(FileOrderArray, shape, dtype)


class Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _reconstruct_keeping_order
        return super().find_class(module, name)


def describe(v):
    if isinstance(v, (np.ndarray, np.generic)):
        dt = getattr(v, "file_dtype", None)
        a = np.asarray(v)
        if dt is not None:
            a = a.astype(dt)
        fortran = bool(a.ndim > 1 and a.flags.f_contiguous and not a.flags.c_contiguous)
        return {"type": "ndarray", "dtype": a.dtype.str, "shape": list(a.shape), "fortran_order": fortran,
                "sum": number(exact_sum(a)), "crc32c": crc32c(np.ascontiguousarray(a).tobytes())}
    if v is None:
        return {"type": "none"}
    if isinstance(v, bool):
        return {"type": "bool", "value": v}
    if isinstance(v, int):
        return {"type": "int", "value": v}
    if isinstance(v, float):
        return {"type": "float", "value": number(v)}
    if isinstance(v, str):
        return {"type": "str", "value": v}
    if isinstance(v, (bytes, bytearray)):
        return {"type": "bytes", "length": len(v)}
    if isinstance(v, tuple):
        return {"type": "tuple", "items": [describe(x) for x in v]}
    if isinstance(v, list):
        return {"type": "list", "items": [describe(x) for x in v]}
    if isinstance(v, (set, frozenset)):
        return {"type": "frozenset" if isinstance(v, frozenset) else "set", "items": [describe(x) for x in v]}
    if isinstance(v, dict):
        return {"type": "dict", "items": [[describe(k), describe(x)] for k, x in v.items()]}
    raise TypeError("inspect_ref.py: cannot describe %r" % type(v))


def pickle_ref(path, encoding):
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    protocol = 0
    for op, arg, _ in pickletools.genops(data):
        if op.name == "PROTO":
            protocol = arg
            break
        protocol = max(protocol, min(op.proto, 1))
    import io
    v = Unpickler(io.BytesIO(data), encoding=encoding).load()
    return {"format": "pickle", "protocol": protocol, "root": describe(v)}


# ---- TFRecord

def tfrecord_ref(path):
    last = None
    for comp, name in (("", "none"), ("GZIP", "gzip"), ("ZLIB", "zlib")):
        try:
            records = [r.numpy() for r in tf.data.TFRecordDataset(path, compression_type=comp)]
        except Exception as e:  # wrong compression: try the next
            last = e
            continue
        feats = {}
        for r in records:
            try:
                ex = tf.train.Example.FromString(r)
            except Exception:
                continue
            for key, f in ex.features.feature.items():
                s = feats.setdefault(key, {"kind": None, "values": 0, "sum": 0.0})
                kind = f.WhichOneof("kind")
                if kind is None:
                    continue
                if s["kind"] is None:
                    s["kind"] = kind
                elif s["kind"] != kind:
                    s["kind"] = "mixed"
                vals = getattr(f, kind).value
                s["values"] += len(vals)
                s.setdefault("terms", []).extend([len(b) for b in vals] if kind == "bytes_list" else
                                                 [float(x) for x in vals])
        for s in feats.values():
            s["kind"] = s["kind"] or "none"
            s["sum"] = number(exact_sum(np.array(s.pop("terms", []), dtype=np.float64)))
        return {"format": "tfrecord", "compression": name, "records": len(records), "features": feats}
    raise last


# ---- driver

def ref_of(path, fmt, encoding):
    if fmt == "idx":
        return idx_ref(path)
    if fmt == "pickle":
        return pickle_ref(path, encoding)
    return tfrecord_ref(path)


def inspect_files(out_dir, shared):
    import pickle_gen
    import tfrecord_gen

    files = []  # (path, format, encoding, python_must_fail)
    pk_dir = os.path.join(out_dir, "pickles")
    os.makedirs(pk_dir, exist_ok=True)
    pickle_gen.write(pk_dir)
    with open(os.path.join(pk_dir, "manifest.json")) as f:
        manifest = json.load(f)
    for e in manifest["cases"]:
        files.append((os.path.join(pk_dir, e["file"]), "pickle", e["encoding"], "error" in e))
    tf_dir = os.path.join(out_dir, "tf")
    tfrecord_gen.write(tf_dir)
    for name in sorted(os.listdir(tf_dir)):
        if name != "manifest.json":
            files.append((os.path.join(tf_dir, name), "tfrecord", None, False))
    idx_dir = os.path.join(out_dir, "idx")
    os.makedirs(idx_dir, exist_ok=True)
    rng = np.random.default_rng(5)
    for dt in ("u1", "i1", "i2", "i4", "f4", "f8"):
        for shape in ((7,), (3, 5, 2), (4, 0)):
            if dt[0] == "f":
                a = rng.standard_normal(shape).astype(dt)
            else:
                info = np.iinfo(dt)
                a = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dt)
            for gz in (False, True):
                p = os.path.join(idx_dir, "%s_%s%s" % (dt, "x".join(map(str, shape)), ".gz" if gz else ""))
                write_idx(p, a, gz)
                files.append((p, "idx", None, False))
    for sub, fmt in (("mnist", "idx"), ("mnist-pkl", "pickle"), ("tfrecord", "tfrecord"), ("tfevents", "tfrecord")):
        d = os.path.join(shared, sub)
        for name in sorted(os.listdir(d)):
            files.append((os.path.join(d, name), fmt, "latin1", False))

    with open(os.path.join(out_dir, "ref.jsonl"), "w") as out:
        for path, fmt, enc, must_fail in files:
            enc = enc or "latin1"
            line = {"path": path, "encoding": enc, "format": fmt, "error": must_fail}
            try:
                line["ref"] = ref_of(path, fmt, "ASCII" if enc == "ascii" else enc)
            except Exception as e:
                if not must_fail:
                    raise RuntimeError("%s: Python cannot read it: %s: %s" % (path, type(e).__name__, e))
                line["why"] = "%s: %s" % (type(e).__name__, e)
            out.write(json.dumps(line) + "\n")
    print("OK: %d reference descriptions" % len(files))
    return 0


def check_records(d):
    def read_idx(name):
        with open(os.path.join(d, name), "rb") as f:
            data = f.read()
        rank = data[3]
        dims = struct.unpack(">%dI" % rank, data[4:4 + 4 * rank])
        return np.frombuffer(data[4 + 4 * rank:], dtype=np.uint8).reshape(dims)

    tx, ty = read_idx("train-images-idx3-ubyte"), read_idx("train-labels-idx1-ubyte")
    sx, sy = read_idx("t10k-images-idx3-ubyte"), read_idx("t10k-labels-idx1-ubyte")
    spec = {"image_raw": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64),
            "height": tf.io.FixedLenFeature([], tf.int64), "width": tf.io.FixedLenFeature([], tf.int64),
            "depth": tf.io.FixedLenFeature([], tf.int64)}
    bad = 0
    checked = 0
    for sub in sorted(os.listdir(d)):
        if not sub.startswith("out_"):
            continue
        _, comp, v = sub.split("_")
        v = int(v)
        ctype = {"none": "", "gzip": "GZIP", "zlib": "ZLIB"}[comp]
        expect = {"train.tfrecords": (tx[v:], ty[v:]), "test.tfrecords": (sx, sy)}
        if v > 0:
            expect["validation.tfrecords"] = (tx[:v], ty[:v])
        present = sorted(n for n in os.listdir(os.path.join(d, sub)) if n.endswith(".tfrecords"))
        if present != sorted(expect):
            print("MISMATCH %s: files %s, expected %s" % (sub, present, sorted(expect)))
            bad += 1
        for name, (x, y) in expect.items():
            ds = tf.data.TFRecordDataset(os.path.join(d, sub, name), compression_type=ctype)
            imgs, labels = [], []
            for r in ds:
                p = tf.io.parse_single_example(r, spec)
                if (int(p["height"]), int(p["width"]), int(p["depth"])) != (28, 28, 1):
                    print("MISMATCH %s/%s: height/width/depth" % (sub, name))
                    bad += 1
                imgs.append(tf.io.decode_raw(p["image_raw"], tf.uint8).numpy().reshape(28, 28))
                labels.append(int(p["label"]))
            if len(labels) != len(y) or (len(y) and (not np.array_equal(np.stack(imgs), x)
                                                      or not np.array_equal(np.array(labels), y))):
                print("MISMATCH %s/%s: %d records, expected %d (or different values)" % (sub, name, len(labels),
                                                                                       len(y)))
                bad += 1
            checked += 1
    print("OK: TensorFlow read %d record files" % checked if not bad else "FAILED: %d mismatches" % bad)
    return 1 if bad else 0


def main(argv):
    if len(argv) == 4 and argv[1] == "inspect":
        return inspect_files(argv[2], argv[3])
    if len(argv) == 3 and argv[1] == "records":
        return check_records(argv[2])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
