#!/usr/bin/env python3
"""The mnist_cnn model (TensorFlow's distributed-MNIST tutorial CNN) in
PyTorch, timed over N training steps or whole epochs: the reference that
examples/mnist_cnn and cuda_conv_bench's BM_cnn_epoch are compared with.

Same model: conv 5x5x32 same + ReLU -> max-pool 2x2 -> conv 5x5x64 same +
ReLU -> max-pool 2x2 -> flatten -> dense 1024 ReLU -> dropout 0.4 -> dense 10,
Adam (lr 0.001, eps 1e-7 as Keras), batch 100, MNIST training images scaled
by 1/255. PyTorch's layout is NCHW (its CPU and cuDNN default); cumulus runs
NHWC. The data is preloaded on the device, so only training is timed. Prints
one JSON line per timed block (--steps steps, or one epoch per block).

  /usr/bin/python3 benchmarks/torch_cnn.py --threads 2 --steps 100
  python3 benchmarks/torch_cnn.py --device cuda --epochs 3"""
import argparse
import json
import os
import time

import numpy as np


from mnist_idx import find_mnist, read_idx  # benchmarks/mnist_idx.py, beside this script


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--steps", type=int, default=0, help="time blocks of this many steps (0: whole epochs)")
    ap.add_argument("--blocks", type=int, default=3, help="timed blocks (epochs when --steps is 0)")
    ap.add_argument("--epochs", type=int, default=0, help="same as --blocks with --steps 0")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first (cuDNN autotuning, allocator)")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="PyTorch intra-op threads")
    ap.add_argument("--blas-threads", type=int, default=1,
                    help="OpenBLAS threads (PyTorch's dense GEMMs on Debian)")
    ap.add_argument("--channels-last", action="store_true", help="NHWC memory format, as cumulus")
    ap.add_argument("--no-cudnn-benchmark", action="store_true", help="leave cuDNN's algorithm search off")
    args = ap.parse_args()
    if args.epochs:
        args.steps, args.blocks = 0, args.epochs

    os.environ["OPENBLAS_NUM_THREADS"] = str(args.blas_threads)
    global torch
    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    images, labels = find_mnist(args.data_dir)
    if images:
        x = read_idx(images).reshape(-1, 1, 28, 28)
        y = read_idx(labels)
    else:  # the time per step does not depend on the pixel values
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, size=(60000, 1, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, size=60000, dtype=np.uint8)
    x = torch.from_numpy(x.astype(np.float32) / 255.0).to(dev)
    y = torch.from_numpy(y.astype(np.int64)).to(dev)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format

    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(7 * 7 * 64, 1024), torch.nn.ReLU(), torch.nn.Dropout(0.4),
        torch.nn.Linear(1024, 10)).to(dev).to(memory_format=fmt)
    params = sum(p.numel() for p in model.parameters())
    assert params == 3274634, params
    opt = torch.optim.Adam(model.parameters(), lr=0.001, eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()
    n, bs = x.shape[0], args.batch_size
    steps_per_block = args.steps if args.steps > 0 else n // bs

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    state = {"perm": torch.randperm(n, device=dev), "pos": 0}

    def step():
        if state["pos"] + bs > n:
            state["perm"], state["pos"] = torch.randperm(n, device=dev), 0
        idx = state["perm"][state["pos"]:state["pos"] + bs]
        state["pos"] += bs
        xb = x[idx].contiguous(memory_format=fmt)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), y[idx])
        loss.backward()
        opt.step()
        return loss.detach()

    model.train()
    for _ in range(args.warmup):
        step()
    for block in range(args.blocks):
        sync()
        t0 = time.perf_counter()
        total = torch.zeros((), device=dev)
        for _ in range(steps_per_block):
            total += step()
        sync()
        secs = time.perf_counter() - t0
        print(json.dumps({"framework": "pytorch " + torch.__version__, "device": str(dev),
                          "threads": torch.get_num_threads(), "blas_threads": args.blas_threads,
                          "channels_last": args.channels_last, "block": block + 1, "steps": steps_per_block,
                          "seconds": round(secs, 4), "steps_per_s": round(steps_per_block / secs, 3),
                          "loss": round(float(total) / steps_per_block, 4)}), flush=True)


if __name__ == "__main__":
    main()
