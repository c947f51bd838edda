#!/usr/bin/env python3
"""TFRecord / tf.train.Example interop with real TensorFlow (tests/data/tfrecord_interop_test.cpp).

  tfrecord_gen.py write OUT_DIR   TensorFlow writes record files + OUT_DIR/manifest.json
  tfrecord_gen.py check IN_DIR    TensorFlow reads the files IN_DIR/manifest.json describes
  tfrecord_gen.py both DIR        check DIR/cumulus, then write DIR/tf (one TensorFlow start-up)

Manifest: {"files": [{"name", "compression": "" | "GZIP" | "ZLIB", "kind": "raw" | "example" |
"sequence_example", ...}]}. raw files list "lengths"; record i of length n holds bytes
(31 * j + i) % 256 for j < n. Example records hold "features": {key: feature}, where a feature is
{"kind": "bytes" | "float" | "int64" | "none", "values": [...]}: bytes as hex strings, floats as
their uint32 bit patterns, int64s as numbers. Sequence examples hold "context" (like features) and
"feature_lists": {key: [feature, ...]}. Written example records also carry "hex", the serialized bytes.

Exit status: 0 when everything matches, 1 on a mismatch, 77 when TensorFlow cannot be imported.
"""
import json
import os
import struct
import sys

try:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf
except ImportError as e:  # the caller tries the next interpreter
    print(f"SKIPPED: cannot import tensorflow/numpy with {sys.executable}: {e}")
    sys.exit(77)

COMPRESSIONS = [("", "none"), ("GZIP", "gzip"), ("ZLIB", "zlib")]
RAW_LENGTHS = [0, 1, 2, 255, 1 << 20, 7, 0]
I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1


def raw_record(i, n):
    return bytes((31 * j + i) % 256 for j in range(n)) if n < 4096 else \
        (np.arange(n, dtype=np.int64) * 31 + i).astype(np.uint8).tobytes()


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def bits_f32(b):
    return struct.unpack("<f", struct.pack("<I", b))[0]


# ---- features as JSON <-> tf.train.Feature

def to_tf_feature(f):
    kind, values = f["kind"], f["values"]
    if kind == "bytes":
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[bytes.fromhex(v) for v in values]))
    if kind == "float":
        return tf.train.Feature(float_list=tf.train.FloatList(value=[bits_f32(v) for v in values]))
    if kind == "int64":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    return tf.train.Feature()


def from_tf_feature(f):
    kind = f.WhichOneof("kind")
    if kind == "bytes_list":
        return {"kind": "bytes", "values": [v.hex() for v in f.bytes_list.value]}
    if kind == "float_list":
        return {"kind": "float", "values": [f32_bits(v) for v in f.float_list.value]}
    if kind == "int64_list":
        return {"kind": "int64", "values": list(f.int64_list.value)}
    return {"kind": "none", "values": []}


def example_features():
    """The Examples TensorFlow writes: every list kind, negatives, empty lists, unicode keys."""
    rng = np.random.default_rng(7)
    specials = [0.0, -0.0, 1.5, -2.25, float("inf"), float("-inf"), 1e-45, 3.4028234663852886e38]
    out = []
    for r in range(5):
        feats = {
            "label": {"kind": "int64", "values": [r]},
            "ints": {"kind": "int64", "values": [-1, I64_MIN, I64_MAX, 0, 127, 128, -300, 1 << 40] + [
                int(v) for v in rng.integers(-(1 << 62), 1 << 62, size=r * 10)]},
            "floats": {"kind": "float", "values": [f32_bits(v) for v in specials] + [0x7FC00000] + [
                int(v) for v in rng.integers(0, 1 << 32, size=r * 5, dtype=np.uint64) if (int(v) >> 23) & 0xFF != 0xFF]},
            "bytes": {"kind": "bytes", "values": ["", "00ff00", "68656c6c6f", rng.bytes(300 * r).hex()]},
            "empty_int64": {"kind": "int64", "values": []},
            "empty_float": {"kind": "float", "values": []},
            "empty_bytes": {"kind": "bytes", "values": []},
            "no_kind": {"kind": "none", "values": []},
            "ключ/键/🔑": {"kind": "bytes", "values": ["é".encode().hex(), "🔑".encode().hex()]},
            "image_raw": {"kind": "bytes", "values": [rng.integers(0, 256, size=784, dtype=np.uint8).tobytes().hex()]},
        }
        out.append(feats)
    return out


def sequence_records():
    return [{
        "context": {"len": {"kind": "int64", "values": [3]}, "name": {"kind": "bytes", "values": ["6162"]}},
        "feature_lists": {
            "tokens": [{"kind": "int64", "values": [1, -2]}, {"kind": "int64", "values": []},
                       {"kind": "int64", "values": [I64_MAX]}],
            "scores": [{"kind": "float", "values": [f32_bits(0.5)]}],
            "empty": [],
        },
    }]


def write(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    files = []
    exs = example_features()
    for comp, tag in COMPRESSIONS:
        opts = tf.io.TFRecordOptions(compression_type=comp)
        name = f"raw_{tag}.tfrecord"
        with tf.io.TFRecordWriter(os.path.join(out_dir, name), opts) as w:
            for i, n in enumerate(RAW_LENGTHS):
                w.write(raw_record(i, n))
        files.append({"name": name, "compression": comp, "kind": "raw", "lengths": RAW_LENGTHS})

        name = f"examples_{tag}.tfrecord"
        records = []
        with tf.io.TFRecordWriter(os.path.join(out_dir, name), opts) as w:
            for feats in exs:
                ex = tf.train.Example(features=tf.train.Features(
                    feature={k: to_tf_feature(v) for k, v in feats.items()}))
                s = ex.SerializeToString()
                w.write(s)
                records.append({"hex": s.hex(), "features": feats})
        files.append({"name": name, "compression": comp, "kind": "example", "records": records})

    name = "sequence_none.tfrecord"
    records = []
    with tf.io.TFRecordWriter(os.path.join(out_dir, name)) as w:
        for rec in sequence_records():
            s = tf.train.SequenceExample(
                context=tf.train.Features(feature={k: to_tf_feature(v) for k, v in rec["context"].items()}),
                feature_lists=tf.train.FeatureLists(feature_list={
                    k: tf.train.FeatureList(feature=[to_tf_feature(f) for f in v])
                    for k, v in rec["feature_lists"].items()})).SerializeToString()
            w.write(s)
            records.append(dict(rec, hex=s.hex()))
    files.append({"name": name, "compression": "", "kind": "sequence_example", "records": records})

    with open(os.path.join(out_dir, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump({"writer": f"tensorflow {tf.__version__}", "files": files}, f, indent=1)
    print(f"OK: TensorFlow {tf.__version__} wrote {len(files)} files to {out_dir}")


class Mismatch(Exception):
    pass


def expect(cond, *msg):
    if not cond:
        raise Mismatch(" ".join(str(m) for m in msg))


def check_parsed_example(where, serialized, feats):
    """tf.io.parse_single_example with a VarLenFeature per key, and a FixedLenFeature for non-empty ones."""
    dtypes = {"bytes": tf.string, "float": tf.float32, "int64": tf.int64, "none": tf.int64}
    spec = {k: tf.io.VarLenFeature(dtypes[v["kind"]]) for k, v in feats.items()}
    parsed = tf.io.parse_single_example(serialized, spec)
    fixed_spec = {k: tf.io.FixedLenFeature([len(v["values"])], dtypes[v["kind"]])
                  for k, v in feats.items() if v["values"]}
    fixed = tf.io.parse_single_example(serialized, fixed_spec)
    for k, v in feats.items():
        for how, got in (("VarLenFeature", parsed[k].values.numpy()),) + (
                (("FixedLenFeature", fixed[k].numpy()),) if k in fixed else ()):
            if v["kind"] == "bytes":
                got_json = [b.hex() for b in got]
            elif v["kind"] == "float":
                got_json = [int(b) for b in np.asarray(got, dtype=np.float32).view(np.uint32)]
            else:
                got_json = [int(x) for x in got]
            expect(got_json == v["values"], f"{where}: feature {k!r} via {how}:", got_json[:8], "!=", v["values"][:8])


def check(in_dir):
    with open(os.path.join(in_dir, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    checked = 0
    for entry in manifest["files"]:
        path = os.path.join(in_dir, entry["name"])
        ds = tf.data.TFRecordDataset(path, compression_type=entry["compression"])
        records = [r.numpy() for r in ds]
        where = f"{entry['name']} ({entry['compression'] or 'no compression'})"
        if entry["kind"] == "raw":
            expect(len(records) == len(entry["lengths"]), where, "record count", len(records))
            for i, (r, n) in enumerate(zip(records, entry["lengths"])):
                expect(r == raw_record(i, n), f"{where}: raw record {i} differs")
        elif entry["kind"] == "example":
            expect(len(records) == len(entry["records"]), where, "record count", len(records))
            for i, (r, want) in enumerate(zip(records, entry["records"])):
                ex = tf.train.Example.FromString(r)
                got = {k: from_tf_feature(v) for k, v in ex.features.feature.items()}
                expect(got == want["features"], f"{where}: record {i}: tf.train.Example differs:", got)
                check_parsed_example(f"{where}: record {i}", r, want["features"])
        elif entry["kind"] == "sequence_example":
            expect(len(records) == len(entry["records"]), where, "record count", len(records))
            for i, (r, want) in enumerate(zip(records, entry["records"])):
                s = tf.train.SequenceExample.FromString(r)
                ctx = {k: from_tf_feature(v) for k, v in s.context.feature.items()}
                lists = {k: [from_tf_feature(f) for f in v.feature] for k, v in s.feature_lists.feature_list.items()}
                expect(ctx == want["context"], f"{where}: record {i}: context differs:", ctx)
                expect(lists == want["feature_lists"], f"{where}: record {i}: feature_lists differ:", lists)
                # tf.io.parse_single_sequence_example on the int64 list, as a training input would use it.
                _, seq = tf.io.parse_single_sequence_example(
                    r, sequence_features={"tokens": tf.io.VarLenFeature(tf.int64)})
                dense = tf.sparse.to_dense(seq["tokens"]).numpy().tolist()
                rows = [f["values"] + [0] * (max(len(x["values"]) for x in want["feature_lists"]["tokens"]) -
                                             len(f["values"])) for f in want["feature_lists"]["tokens"]]
                expect(dense == rows, f"{where}: record {i}: parse_single_sequence_example tokens", dense, "!=", rows)
        else:
            raise Mismatch(f"{where}: unknown kind {entry['kind']}")
        checked += 1
    print(f"OK: TensorFlow {tf.__version__} read {checked} files from {in_dir} as described")


def main(argv):
    if len(argv) != 3 or argv[1] not in ("write", "check", "both"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        if argv[1] == "write":
            write(argv[2])
        elif argv[1] == "check":
            check(argv[2])
        else:
            check(os.path.join(argv[2], "cumulus"))
            write(os.path.join(argv[2], "tf"))
    except Mismatch as e:
        msg = str(e)
        print(f"MISMATCH: {msg[:2000]}{' ...' if len(msg) > 2000 else ''}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
