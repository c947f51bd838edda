"""Pickles written and checked by Python and numpy, for tests/data/pickle_interop_test.cpp.

  pickle_gen.py write DIR
      Writes pickles with numpy (every protocol 0-5, every dtype and byte
      order, Fortran order, 0-d, empty, numpy scalars, nested containers,
      numpy-2 module names) and hand-assembled Python-2 pickles (BINSTRING,
      latin-1 array data, one gzipped), plus DIR/manifest.json: for each file
      the protocol, the encoding to load it with and the expected value as
      described by describe() below (or "error" when loading must fail).
  pickle_gen.py check MANIFEST
      Loads each file MANIFEST lists (written by the C++ side) with
      pickle.load and compares describe() of it with the manifest's.

describe() is a canonical JSON form that the C++ test computes too: arrays by
type (dtype.str in native order), shape, memory order, the CRC-32 of their C-order little-endian
bytes and their first elements; floats by their bits; str and bytes as hex.
"""
import collections
import gzip
import json
import math
import os
import pickle
import struct
import sys
import zlib

import numpy as np


def fail(msg):
    sys.exit("pickle_gen.py: " + msg)


def float_bits(x):
    return "%016x" % struct.unpack("<Q", struct.pack("<d", float(x)))[0]


def element(a, x):
    if a.dtype.kind == "b":
        return bool(x)
    if a.dtype.kind in "iu":
        return int(x)
    return float_bits(x)


def canonical(d):
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


def describe(obj, with_sum=False):
    if isinstance(obj, (np.ndarray, np.generic)):  # before float: np.float64 is a float
        return describe_array(obj, with_sum)
    if obj is None:
        return {"t": "none"}
    if isinstance(obj, bool):
        return {"t": "bool", "v": obj}
    if isinstance(obj, int):
        return {"t": "int", "v": obj}
    if isinstance(obj, float):
        return {"t": "float", "bits": float_bits(obj)}
    if isinstance(obj, str):
        return {"t": "str", "hex": obj.encode("utf-8", "surrogatepass").hex()}
    if isinstance(obj, (bytes, bytearray)):
        return {"t": "bytes", "hex": bytes(obj).hex()}
    if isinstance(obj, (tuple, list)):
        return {"t": type(obj).__name__, "items": [describe(x, with_sum) for x in obj]}
    if isinstance(obj, (set, frozenset)):
        items = sorted((describe(x, with_sum) for x in obj), key=canonical)
        return {"t": type(obj).__name__, "items": items}
    if isinstance(obj, dict):
        return {"t": "dict", "items": [[describe(k, with_sum), describe(v, with_sum)] for k, v in obj.items()]}
    fail("cannot describe %r" % type(obj))


def describe_array(obj, with_sum):
    scalar = isinstance(obj, np.generic)
    a = np.asarray(obj)
    le = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"), copy=False)
    d = {
        "t": "scalar" if scalar else "array",
        # numpy's _reconstruct turns big-endian arrays native on load (same values), so
        # the description names the type; the CRC of the values checks the byte order.
        "dtype": a.dtype.newbyteorder("=").str,
        "shape": list(a.shape),
        "fortran": bool(a.flags.f_contiguous and not a.flags.c_contiguous),
        "crc32": zlib.crc32(le.tobytes()),
        "first": [element(a, x) for x in a.ravel(order="C")[:8]],
    }
    if with_sum and not scalar and a.dtype.kind != "b":
        try:  # exactly rounded; None when it is not finite
            s = math.fsum(float(x) for x in a.ravel())
        except (ValueError, OverflowError):
            s = math.nan
        d["sum"] = s if math.isfinite(s) else None
    return d


# ---------------------------------------------------------------- numpy-written cases

DTYPES = ["|b1", "|i1", "|u1", "<i2", ">i2", "<u2", ">u2", "<i4", ">i4", "<u4", ">u4", "<i8", ">i8",
          "<u8", ">u8", "<f2", ">f2", "<f4", ">f4", "<f8", ">f8"]


def sample(dtype, shape):
    dt = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64))
    if dt.kind == "b":
        v = np.arange(n) % 3 == 1
    elif dt.kind in "iu":
        info = np.iinfo(dt)
        base = [int(info.min), int(info.max), 0, 1, int(info.max) - 1, int(info.min) + 1, 7, 100]
        v = np.array([base[i] if i < len(base) else (i * 2654435761) % (int(info.max) + 1) for i in range(n)],
                     dtype=dt)
    else:
        finfo = np.finfo(dt)
        base = [0.0, -0.0, 1.5, -2.25, float(finfo.max), float(finfo.tiny), np.inf, -np.inf, np.nan]
        rest = [(i % 97) / 8.0 - 6.0 for i in range(n)]
        v = np.array([base[i] if i < len(base) else rest[i] for i in range(n)], dtype=dt)
    return v.astype(dt).reshape(shape)


def numpy_cases():
    """(name, object) pairs that numpy and pickle write at every protocol."""
    cases = []
    cases.append(("dtypes", {dt: sample(dt, (3, 5)) for dt in DTYPES}))
    fort = {}
    for dt in ["<f4", ">f8", "<i8", "|u1", ">u2", "|b1"]:
        fort["F2_" + dt] = np.asfortranarray(sample(dt, (4, 7)))
        fort["F3_" + dt] = np.asfortranarray(sample(dt, (2, 3, 5)))
    fort["T"] = sample("<f4", (6, 4)).T  # F-contiguous view
    fort["C"] = sample("<f4", (6, 4))
    cases.append(("fortran", fort))
    cases.append(("zero_d", [np.array(2.5), np.array(-7, ">i4"), np.array(True), np.float32(1.5),
                             np.int64(-3), np.bool_(True), np.uint16(65535), np.float16(-0.0), np.float64(np.nan),
                             np.int8(-128), np.uint64(2**64 - 1)]))
    cases.append(("empty", (np.zeros((0,), "<f4"), np.zeros((3, 0), ">i8"), np.zeros((0, 4, 2), "|u1"),
                            np.asfortranarray(np.zeros((0, 3), "<f8")))))
    base = sample("<f8", (8, 6))
    cases.append(("noncontiguous", {"strided": base[::2, 1::2], "rev": base[::-1], "col": base[:, 2]}))
    shared_list = [1, 2, 3]
    shared_arr = sample("<i4", (2, 2))
    nested = {
        "none": None, "t": True, "f": False,
        "ints": [0, 1, 255, 256, 65535, 65536, -1, -256, -2**31, 2**31 - 1, 2**31, -2**31 - 1,
                 2**63 - 1, -2**63, 2**40, -2**40],
        "floats": (0.5, -0.0, float("inf"), float("-inf"), float("nan"), 1e300, 5e-324, 1 / 3),
        "strs": ["", "ascii", "caf\u00e9", "\u20ac\u4e2d", "\U0001f600", "a\\b\nc\x00d", "x" * 300],
        "bytes": [b"", b"\x00\xff\x80abc", bytes(range(256)) * 2],
        "bytearray": bytearray(b"\x01\x02\xfe"),
        (1, "k"): "tuple key", 7: "int key", 2.5: "float key", b"bk": "bytes key", None: "none key",
        frozenset({1, 2}): "frozenset key",
        "set": {1, "two", (3, 4)}, "empty_set": set(), "frozen": frozenset({b"x", 5}),
        "nested": [[], (), {}, [[[[]]]], ({"a": ({"b": [1, (2,)]},)},)],
        "shared": [shared_list, shared_list, shared_arr, shared_arr],
        "ordered": collections.OrderedDict([("z", 1), ("a", 2)]),
        "array_in": [np.arange(5, dtype="<i2"), (np.ones((2, 2), ">f4"),)],
        "long_list": list(range(2500)),
        "big_dict": {"k%d" % i: i for i in range(1200)},
    }
    cases.append(("nested", nested))
    cases.append(("big", {"f32": (np.arange(70000, dtype="<f4") % 251).reshape(700, 100),
                          "u8": np.asfortranarray((np.arange(90000) % 256).astype("|u1").reshape(300, 300))}))
    ro = sample(">f8", (3, 3))
    ro.flags.writeable = False
    cases.append(("readonly", {"ro": ro, "rw": sample("<i2", (4,))}))
    cases.append(("scalar_root", np.float64(3.25)))
    cases.append(("array_root", np.asfortranarray(sample("<f4", (3, 2)))))
    return cases


def reframe_numpy2(data):
    """The pickle with numpy-2 module names (numpy._core...), frames dropped."""
    out = bytearray()
    ops = list(pickletools_genops(data))
    for i, (op, arg, pos) in enumerate(ops):
        end = ops[i + 1][2] if i + 1 < len(ops) else len(data)
        chunk = data[pos:end]
        if op.name == "FRAME":
            continue
        if op.name == "GLOBAL":
            chunk = chunk.replace(b"numpy.core.", b"numpy._core.")
        elif op.name == "SHORT_BINUNICODE" and arg.startswith("numpy.core."):
            s = arg.replace("numpy.core.", "numpy._core.").encode()
            chunk = bytes([0x8C, len(s)]) + s
        out += chunk
    return bytes(out)


def pickletools_genops(data):
    import pickletools
    return pickletools.genops(data)


# ---------------------------------------------------------------- Python-2 pickles, by hand

class Py2Pickler:
    """Protocol 2 as cPickle on Python 2 with numpy wrote it: str objects as
    SHORT_BINSTRING/BINSTRING (raw bytes), ints as BININT*, every object memoized."""

    def __init__(self):
        self.out = bytearray(b"\x80\x02")
        self.memo = {}

    def put(self):
        i = len(self.memo) + 1  # cPickle counted from 1
        self.memo[("#", i)] = i
        self.out += b"q" + bytes([i]) if i < 256 else b"r" + struct.pack("<I", i)
        return i

    def glob(self, module, name):
        key = ("g", module, name)
        if key in self.memo:
            self.out += b"h" + bytes([self.memo[key]])
            return
        self.out += b"c" + module.encode() + b"\n" + name.encode() + b"\n"
        self.memo[key] = self.put()

    def py2str(self, b):
        if len(b) < 256:
            self.out += b"U" + bytes([len(b)]) + b
        else:
            self.out += b"T" + struct.pack("<i", len(b)) + b
        self.put()

    def unicode(self, s):
        e = s.encode("utf-8")
        self.out += b"X" + struct.pack("<I", len(e)) + e
        self.put()

    def int(self, v):
        if 0 <= v < 256:
            self.out += b"K" + bytes([v])
        elif 0 <= v < 65536:
            self.out += b"M" + struct.pack("<H", v)
        else:
            self.out += b"J" + struct.pack("<i", v)

    def dtype(self, a):
        self.glob("numpy", "dtype")
        self.py2str((a.dtype.kind + str(a.dtype.itemsize)).encode())
        self.int(0)
        self.int(1)
        self.out += b"\x87R"
        self.put()
        self.out += b"("
        self.int(3)
        self.py2str(a.dtype.str[0].encode())
        self.out += b"NNN"
        self.out += b"J\xff\xff\xff\xffJ\xff\xff\xff\xff"
        self.int(0)
        self.out += b"tb"

    def array(self, a):
        self.glob("numpy.core.multiarray", "_reconstruct")
        self.glob("numpy", "ndarray")
        self.int(0)
        self.out += b"\x85"
        self.put()
        self.py2str(b"b")
        self.out += b"\x87"
        self.put()
        self.out += b"R"
        self.put()
        self.out += b"("
        self.int(1)
        for d in a.shape:
            self.int(d)
        self.out += {0: b")", 1: b"\x85", 2: b"\x86", 3: b"\x87"}[a.ndim]
        self.put()
        self.dtype(a)
        fortran = a.flags.f_contiguous and not a.flags.c_contiguous
        self.out += b"\x88" if fortran else b"\x89"
        self.py2str(a.tobytes(order="F" if fortran else "C"))
        self.out += b"tb"

    def value(self, v):
        if isinstance(v, np.ndarray):
            self.array(v)
        elif isinstance(v, bytes):
            self.py2str(v)
        elif isinstance(v, str):
            self.unicode(v)
        elif isinstance(v, bool):
            self.out += b"\x88" if v else b"\x89"
        elif isinstance(v, int):
            self.int(v)
        elif isinstance(v, tuple):
            if len(v) <= 3:
                for x in v:
                    self.value(x)
                self.out += {0: b")", 1: b"\x85", 2: b"\x86", 3: b"\x87"}[len(v)]
            else:
                self.out += b"("
                for x in v:
                    self.value(x)
                self.out += b"t"
            self.put()
        elif isinstance(v, dict):
            self.out += b"}"
            self.put()
            self.out += b"("
            for k, x in v.items():
                self.value(k)
                self.value(x)
            self.out += b"u"
        else:
            fail("Py2Pickler: %r" % type(v))

    def dumps(self, v):
        self.value(v)
        self.out += b"."
        return bytes(self.out)


def py2_cases():
    rng = np.random.RandomState(5)
    weights = {b"W1": np.asfortranarray(rng.standard_normal((4, 3)).astype("<f4")),
               b"b1": (rng.standard_normal(3) * 100).astype(">f8"),
               b"name": b"caf\xe9 \xc8",  # a py2 str: latin-1 bytes, not ASCII
               "unicode": "\u00fc\u20ac",
               b"counts": (7, 300, 70000)}
    x = lambda n: (np.arange(n * 784) % 256 / 255.0).astype("<f4").reshape(n, 784)
    y = lambda n: (np.arange(n) % 10).astype("<i8")
    mnist_like = ((x(3), y(3)), (x(2), y(2)), (x(2), y(2)))
    return [("py2_weights", weights), ("py2_mnist_like", mnist_like)]


# ---------------------------------------------------------------- commands

def write(outdir):
    cases = []

    def add(fname, data, protocol, encoding="ascii", expect=None, error=None):
        with open(os.path.join(outdir, fname), "wb") as f:
            f.write(data)
        if error is None:
            raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
            loaded = pickle.loads(raw, encoding=encoding if encoding != "ascii" else "ASCII")
            got = describe(loaded, with_sum=True)
            if expect is not None and canonical(got) != canonical(expect):
                fail("%s does not load back as written" % fname)
            cases.append({"file": fname, "protocol": protocol, "encoding": encoding, "expect": got})
        else:
            cases.append({"file": fname, "protocol": protocol, "encoding": encoding, "error": error})

    for name, obj in numpy_cases():
        for proto in range(6):
            add("%s_p%d.pkl" % (name, proto), pickle.dumps(obj, protocol=proto), proto,
                expect=describe(obj, with_sum=True))
    # numpy 2 spells the modules numpy._core.*; numpy >= 1.26 reads both.
    for name, obj in numpy_cases()[:4]:
        for proto in (2, 4, 5):
            data = reframe_numpy2(pickle.dumps(obj, protocol=proto))
            cases.append({"file": "%s_np2_p%d.pkl" % (name, proto), "protocol": proto, "encoding": "ascii",
                          "expect": describe(obj, with_sum=True)})
            with open(os.path.join(outdir, cases[-1]["file"]), "wb") as f:
                f.write(data)
    add("nested_p4.pkl.gz", gzip.compress(pickle.dumps(numpy_cases()[5][1], protocol=4)), 4)

    for name, obj in py2_cases():
        data = Py2Pickler().dumps(obj)
        if name == "py2_mnist_like":
            data = gzip.compress(data)
            name += ".pkl.gz"
        else:
            name += ".pkl"
        add(name, data, 2, "latin1")
        cases.append({"file": name, "protocol": 2, "encoding": "bytes",
                      "expect": describe(pickle.loads(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data,
                                                      encoding="bytes"), with_sum=True)})
        try:
            pickle.loads(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
            fail("%s loaded with encoding ASCII" % name)
        except UnicodeDecodeError:
            cases.append({"file": name, "protocol": 2, "encoding": "ascii", "error": "non-ASCII"})

    with open(os.path.join(outdir, "manifest.json"), "w") as f:
        json.dump({"numpy": np.__version__, "python": sys.version.split()[0], "cases": cases}, f)


def check(manifest_path):
    base = os.path.dirname(manifest_path)
    with open(manifest_path) as f:
        manifest = json.load(f)
    bad = 0
    for case in manifest["cases"]:
        with open(os.path.join(base, case["file"]), "rb") as f:
            data = f.read()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        if data[:2] != bytes([0x80, case["protocol"]]):
            print("%s: starts %r, expected protocol %d" % (case["file"], data[:2], case["protocol"]))
            bad += 1
            continue
        got = describe(pickle.loads(data))
        if canonical(got) != canonical(case["expect"]):
            print("%s: loaded\n  %s\nexpected\n  %s" % (case["file"], canonical(got)[:2000],
                                                       canonical(case["expect"])[:2000]))
            bad += 1
    print("pickle_gen.py check: %d of %d files as expected" % (len(manifest["cases"]) - bad,
                                                                len(manifest["cases"])))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "write":
        write(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "check":
        check(sys.argv[2])
    else:
        sys.exit(__doc__)
