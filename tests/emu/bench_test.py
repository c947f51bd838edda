#!/usr/bin/env python3
"""cuda_bench on the CUDA emulation, and tools/gpu-summary on its output.

    bench_test.py CUDA_EMU_BENCH GPU_SUMMARY OUT_DIR

Runs the small cases of every benchmark family of benchmarks/cuda_bench.cu
(the GEMM at three MLP shapes, ours, cuBLAS's, each tile forced, with
and without a K split, and the benchmark-only tile variants; the
copy; softmax cross-entropy; the RMSprop update; not the MLP epoch, too
slow here) as tools/gpu-check runs them, then the summary script on the
JSON, and checks that every case ran without an error, that each product
has one automatic tile, and that the summary has a row for each. The
emulated times are the CPU's and are not looked at.
"""
import json
import os
import re
import subprocess
import sys

bench, summary, out = sys.argv[1:4]
os.makedirs(out, exist_ok=True)
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print("FAILED:", what)


shapes = ["128/10/512/0/0", "512/10/128/1/0", "128/512/10/0/1"]  # the MLP's last layer, forward and backward
labels = ["128x10x512", "512x10x128 At", "128x512x10 Bt"]
expected = set()
for s in shapes:
    expected |= {f"BM_gemm_cumulus/{s}/manual_time", f"BM_gemm_cublas/{s}/manual_time"}
    expected |= {f"BM_gemm_tile/{s}/{t}/1/manual_time" for t in (1, 2, 3)}  # each tile unsplit
    expected |= {f"BM_gemm_variant/{s}/{v}/manual_time" for v in (0, 1, 2)}  # the benchmark-only tiles
expected |= {"BM_d2d_copy/manual_time", "BM_softmax_xent/128/10/manual_time", "BM_rmsprop_multi/0/manual_time"}
pattern = "|".join(["BM_gemm_(cumulus|cublas|tile|variant)/(" + "|".join(shapes) + ")/",
                    "BM_d2d_copy", "BM_softmax_xent/128/10/", "BM_rmsprop_multi/0/"])
json_path = os.path.join(out, "cuda_bench.json")
if os.path.exists(json_path):
    os.remove(json_path)
run = subprocess.run([bench, "--benchmark_min_time=0.01", "--benchmark_format=json", "--benchmark_filter=" + pattern,
                      "--benchmark_out=" + json_path, "--benchmark_out_format=json"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=240)
check(run.returncode == 0, f"cuda_bench exited {run.returncode}: {run.stderr[-2000:]}")
try:
    benchmarks = json.load(open(json_path))["benchmarks"]
except (OSError, ValueError, KeyError) as e:
    benchmarks = []
    check(False, f"no benchmark JSON in {json_path}: {e}")
names = {b["name"] for b in benchmarks}
# Besides: the medium and small tiles (2, 3) split along K (7th argument > 1).
split = re.compile(r"^BM_gemm_tile/(" + "|".join(shapes) + r")/[23]/([2-9]|[1-9][0-9]+)/manual_time$")
splits = {n for n in names if split.match(n)}
check(names - splits == expected,
      f"benchmarks run: missing {sorted(expected - names)}, unexpected {sorted(names - splits - expected)}")
check(len(splits) >= 2 * len(shapes), f"split-K cases run: {sorted(splits)}")
for b in benchmarks:
    check(not b.get("error_occurred"), f"{b['name']}: {b.get('error_message')}")
    check(b.get("real_time", 0) > 0, f"{b['name']}: no time")
    # time_device's launches queue behind its busy wait; here the queue runs
    # only at the synchronization, so the wait never runs out.
    check(b.get("host_bound") == 0, f"{b['name']}: host_bound {b.get('host_bound')} (0 expected)")
for s, label in zip(shapes, labels):
    tiles = [b.get("label", "") for b in benchmarks if b["name"].startswith(f"BM_gemm_tile/{s}/")]
    check(sum(t.endswith(" auto") for t in tiles) == 1, f"{label}: one automatic tile among {tiles}")
    variants = [b.get("label", "") for b in benchmarks if b["name"].startswith(f"BM_gemm_variant/{s}/")]
    check(all(t.startswith(label + " ") for t in tiles + variants), f"{label}: tile labels {tiles + variants}")
    check(not any(t.endswith(" auto") for t in variants), f"{label}: a variant marked automatic: {variants}")

table = subprocess.run([sys.executable, summary, out], capture_output=True, text=True, timeout=60)
print(table.stdout)
check(table.returncode == 0, f"gpu-summary exited {table.returncode}: {table.stderr[-2000:]}")
rows = table.stdout
for label in labels:
    check(f"sgemm {label} " in rows, f"summary row for sgemm {label}")
for row in ("softmax_xent 128x10 ", "rmsprop_multi mnist_mlp params ", "device-to-device copy: "):
    check(row in rows, f"summary row '{row.strip()}'")
check("benchmark error" not in rows, "no benchmark errors in the summary")
print("cuda_emu_bench:", "FAILED" if failures else "passed", f"({len(benchmarks)} benchmarks)")
sys.exit(1 if failures else 0)
