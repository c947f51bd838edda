#!/usr/bin/env python3
"""The Keras mnist_mlp model in PyTorch, timed per epoch: the reference that
benchmarks/mlp_epoch_bench is compared with (tools/bench-mlp runs both).

Same model (784-512-512-10, ReLU, dropout 0.2), RMSprop (lr 0.001, rho 0.9,
eps 1e-7, as Keras), batch 128, 60000 MNIST training images scaled by 1/255.
The data is preloaded on the device, as cumulus does, so only training is
timed. Prints one JSON line per epoch; the first epoch includes the
device's start-up (CUDA context, cuBLAS set-up), so tools/gpu-summary
leaves it out."""
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
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1, help="PyTorch intra-op threads")
    ap.add_argument("--blas-threads", type=int, default=os.cpu_count(),
                    help="OpenBLAS threads (PyTorch's GEMMs on Debian); default: all cores")
    args = ap.parse_args()

    # Must be set before the BLAS library is loaded. On Debian's python3-torch
    # the GEMMs run in OpenBLAS, and its threads and PyTorch's oversubscribe
    # the cores when both are > 1; tools/bench-mlp tries the combinations.
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.blas_threads)
    global torch
    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # FP32, as cumulus (PyTorch's default too)
    images, labels = find_mnist(args.data_dir)
    if images:
        x = read_idx(images).reshape(-1, 784)
        y = read_idx(labels)
    else:  # the time per epoch does not depend on the pixel values
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, size=(60000, 784), dtype=np.uint8)
        y = rng.integers(0, 10, size=60000, dtype=np.uint8)
    x = torch.from_numpy(x.astype(np.float32) / 255.0).to(dev)
    y = torch.from_numpy(y.astype(np.int64)).to(dev)

    model = torch.nn.Sequential(
        torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Dropout(0.2),
        torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Dropout(0.2),
        torch.nn.Linear(512, 10)).to(dev)
    opt = torch.optim.RMSprop(model.parameters(), lr=0.001, alpha=0.9, eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()
    n = x.shape[0]

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(n, device=dev)
        sync()
        t0 = time.perf_counter()
        total = torch.zeros((), device=dev)
        for start in range(0, n, args.batch_size):
            idx = perm[start:start + args.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += loss.detach() * idx.shape[0]
        sync()
        secs = time.perf_counter() - t0
        print(json.dumps({"framework": "pytorch " + torch.__version__, "device": str(dev), "threads": torch.get_num_threads(),
                          "blas_threads": args.blas_threads,
                          "epoch": epoch + 1, "epoch_seconds": round(secs, 4), "loss": round(float(total) / n, 4)}), flush=True)


if __name__ == "__main__":
    main()
