"""The Python side of tests/train/trainer_interop_test.cpp.

usage: trainer_interop.py WORKDIR

1. TensorBoard (pip) reads every run under WORKDIR/logs three ways and writes
   WORKDIR/tb.json = {reader: {run: {tag: [[step, value], ...]}}}:
   - "accumulator": tensorboard.backend.event_processing.event_accumulator
     (Scalars), as TensorBoard 1.x and most scripts read event files;
   - "plugin": plugin_event_accumulator (Tensors, after data_compat), what the
     TensorBoard 2.x server's scalars plugin reads;
   - "iterator": tf.compat.v1.train.summary_iterator over each file, raw (no
     purge of orphaned steps).
2. cloudml-hypertune makes the reports listed in WORKDIR/reports.json
   ({"trial": str, "reports": [[tag, value, step or null, checkpoint_path]]},
   values "nan"/"inf"/"-inf" as strings) into WORKDIR/py/output.metrics.

Exits 77 when tensorboard, tensorflow or hypertune cannot be imported.
"""
import json
import os
import sys

try:
    import tensorflow as tf
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.backend.event_processing import plugin_event_accumulator
    from tensorboard.util import tensor_util
    import hypertune
except ImportError as e:
    print("SKIP: %s" % e)
    sys.exit(77)


def runs(logdir):
    out = []
    for root, _, files in os.walk(logdir):
        if any("tfevents" in f for f in files):
            out.append(os.path.relpath(root, logdir))
    return sorted(out)


def main():
    work = sys.argv[1]
    logdir = os.path.join(work, "logs")
    result = {"accumulator": {}, "plugin": {}, "iterator": {}}
    for run in runs(logdir):
        d = os.path.join(logdir, run)
        acc = event_accumulator.EventAccumulator(d, size_guidance={event_accumulator.SCALARS: 0})
        acc.Reload()
        result["accumulator"][run] = {
            tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
        pacc = plugin_event_accumulator.EventAccumulator(d, size_guidance={plugin_event_accumulator.TENSORS: 0})
        pacc.Reload()
        tags = {}
        for tag in pacc.Tags()["tensors"]:
            meta = pacc.SummaryMetadata(tag)
            assert meta.plugin_data.plugin_name == "scalars", (tag, meta)
            tags[tag] = [[e.step, float(tensor_util.make_ndarray(e.tensor_proto))] for e in pacc.Tensors(tag)]
        result["plugin"][run] = tags
        raw = {}
        for f in sorted(os.listdir(d)):
            for i, ev in enumerate(tf.compat.v1.train.summary_iterator(os.path.join(d, f))):
                if i == 0:
                    assert ev.file_version == "brain.Event:2", ev
                for v in ev.summary.value:
                    if v.HasField("simple_value"):
                        val = v.simple_value
                    else:
                        val = float(tf.make_ndarray(v.tensor))
                    raw.setdefault(v.tag, []).append([ev.step, val])
        result["iterator"][run] = raw
    with open(os.path.join(work, "tb.json"), "w") as f:
        json.dump(result, f)

    with open(os.path.join(work, "reports.json")) as f:
        spec = json.load(f)
    os.environ["CLOUD_ML_HP_METRIC_FILE"] = os.path.join(work, "py", "output.metrics")
    os.environ["CLOUD_ML_TRIAL_ID"] = spec["trial"]
    ht = hypertune.HyperTune()
    for tag, value, step, path in spec["reports"]:
        ht.report_hyperparameter_tuning_metric(
            hyperparameter_metric_tag=tag, metric_value=float(value), global_step=step, checkpoint_path=path)
    print("OK: %d runs, %d reports" % (len(result["accumulator"]), len(spec["reports"])))


if __name__ == "__main__":
    main()
