"""An independent safetensors reader and writer (numpy + json, no safetensors
package), for tests/io/safetensors_test.cpp.

  safetensors_interop.py read IN.safetensors OUT.json
      Reads IN strictly and writes {"metadata", "order", "tensors": {name:
      {"dtype", "shape", "values"}}} to OUT (values flat, row-major; F16 and
      BF16 widened to float).
  safetensors_interop.py write OUT.safetensors
      Writes fixed tensors laid out as the reference (Rust) implementation
      does: sorted by dtype size (largest first) then name, header padded to 8.
"""
import json
import struct
import sys

import numpy as np

DTYPES = {
    "F16": "<f2", "BF16": "<u2", "F32": "<f4", "F64": "<f8", "I8": "i1",
    "I32": "<i4", "I64": "<i8", "U8": "u1", "BOOL": "?",
}


def fail(msg):
    sys.exit("safetensors_interop.py: " + msg)


def no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        fail("duplicate keys in %r" % keys)
    return dict(pairs)


def read(path, out):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    if n % 8 != 0:
        fail("header length %d is not a multiple of 8" % n)
    if 8 + n > len(blob):
        fail("header length %d exceeds the file" % n)
    header = json.loads(blob[8:8 + n].decode("utf-8"), object_pairs_hook=no_duplicates)
    buf = blob[8 + n:]
    meta = header.pop("__metadata__", {})
    order = sorted(header, key=lambda k: tuple(header[k]["data_offsets"]))
    pos = 0
    tensors = {}
    for name in order:
        info = header[name]
        if sorted(info) != ["data_offsets", "dtype", "shape"]:
            fail("tensor %r has keys %r" % (name, sorted(info)))
        begin, end = info["data_offsets"]
        if begin != pos:
            fail("tensor %r begins at %d, expected %d" % (name, begin, pos))
        pos = end
        arr = np.frombuffer(buf[begin:end], dtype=DTYPES[info["dtype"]])
        shape = tuple(info["shape"])
        if arr.size != int(np.prod(shape, dtype=np.int64)):
            fail("tensor %r: %d elements for shape %r" % (name, arr.size, shape))
        arr = arr.reshape(shape)
        if info["dtype"] == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        if info["dtype"] in ("F16", "BF16", "F32"):
            values = [float(x) for x in arr.astype(np.float64).ravel()]
        elif info["dtype"] == "BOOL":
            values = [bool(x) for x in arr.ravel()]
        else:
            values = arr.ravel().tolist()
        tensors[name] = {"dtype": info["dtype"], "shape": list(shape), "values": values}
    if pos != len(buf):
        fail("tensors cover %d of %d buffer bytes" % (pos, len(buf)))
    with open(out, "w") as f:
        json.dump({"metadata": meta, "order": order, "tensors": tensors}, f)


def write(path):
    bf16_bits = (np.array([1.0, -3.5, 2.0 ** -100], "<f4").view("<u4") >> 16).astype("<u2")
    arrays = {
        "w_f32": ("F32", (np.arange(24, dtype="<f4") / 8 - 1).reshape(2, 3, 4)),
        "b_f64": ("F64", (np.arange(5, dtype="<f8") - 2) * 0.1),
        "i_i64": ("I64", np.array([-2 ** 62, -1, 0, 1, 2 ** 62], "<i8")),
        "i_i32": ("I32", np.arange(-3, 4, dtype="<i4").reshape(7, 1)),
        "u8": ("U8", np.arange(256, dtype="u1").reshape(16, 16)),
        "i8": ("I8", np.arange(-128, 128, dtype="i1")),
        "h_f16": ("F16", np.array([1, -2, 0.5, 65504, 2.0 ** -24], "<f2")),
        "bf16": ("BF16", bf16_bits),
        "mask": ("BOOL", np.array([True, False, True])),
        "scalar": ("F32", np.array(3.25, "<f4")),
        "empty": ("F32", np.zeros((0, 3), "<f4")),
    }
    names = sorted(arrays, key=lambda k: (-arrays[k][1].itemsize, k))
    header = {"__metadata__": {"format": "np", "writer": "numpy"}}
    chunks = []
    pos = 0
    for name in names:
        dtype, arr = arrays[name]
        data = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [pos, pos + len(data)]}
        pos += len(data)
        chunks.append(data)
    text = json.dumps(header).encode("utf-8")  # with Python's spaces, unlike the compact Rust output
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "read":
        read(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "write":
        write(sys.argv[2])
    else:
        fail("usage: read IN OUT | write OUT")
