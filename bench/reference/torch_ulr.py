"""PyTorch reference of the GPU bench (bench/gpu/run.sh): the same training as oneforward's CUDA backend, written
plainly with torch ops, so both run side by side on one GPU in one script.

ULR: the K-copy noisy forward (the first layer's clean GEMM once per sample, then K noisy copies of its
pre-activation; later layers on B K rows), per-row losses, leave-one-out row weights w = (l - b) / (B K), and the
gradients as einsum reductions: grad W_l = (1 / sigma) sum_r w_r e_l[r] a_{l-1}[r]^T, grad b_l = (1 / sigma)
sum_r w_r e_l[r]; the first layer's through G = sum_k w e_1 (B rows). Adam from torch.optim. BP: nn.Linear +
ReLU + cross-entropy + Adam.

Modes (one JSON line on stdout each):
  digits      --data DIR --estimator bp|ulr --copies K --sigma S --lr LR --epochs 5 --batch 64: ms/step, per-epoch test accuracy,
              time to 93% test accuracy (training time only, evaluated after every epoch)
  throughput  --estimator bp|ulr --copies K --rows 65536 --widths 784,4096,4096,10 --steps 20: TFLOP/s
DIR holds what `node dist/bench/cases/gpu.js export DIR` wrote: x_train.f32, y_train.i32, x_test.f32,
y_test.i32, meta.json. --device cpu runs either mode on the CPU, to check the script where there is no GPU.
"""
import argparse
import json
import os
import time

import numpy as np
import torch


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def load(data):
    meta = json.load(open(os.path.join(data, "meta.json")))
    f = lambda name, dt, shape: np.fromfile(os.path.join(data, name), dtype=dt).reshape(shape)
    return (f("x_train.f32", np.float32, (meta["train"], meta["inputs"])), f("y_train.i32", np.int32, (meta["train"],)),
            f("x_test.f32", np.float32, (meta["test"], meta["inputs"])), f("y_test.i32", np.int32, (meta["test"],)))


def init_params(widths, dev, gen):
    """PyTorch's nn.Linear init (Kaiming-uniform weights, uniform bias), as parameter tensors."""
    ps = []
    for i, o in zip(widths[:-1], widths[1:]):
        bound = 1.0 / i ** 0.5
        W = (torch.rand(o, i, device=dev, generator=gen) * 2 - 1) * bound
        b = (torch.rand(o, device=dev, generator=gen) * 2 - 1) * bound
        ps += [W.requires_grad_(), b.requires_grad_()]
    return ps


def forward(ps, x):
    a = x
    L = len(ps) // 2
    for l in range(L):
        a = a @ ps[2 * l].T + ps[2 * l + 1]
        if l + 1 < L:
            a = torch.relu(a)
    return a


@torch.no_grad()
def ulr_grads(ps, x, y, K, sigma, gen):
    """One ULR estimate: sets p.grad for every parameter; returns the mean noisy loss (a 0-d tensor)."""
    B = x.shape[0]
    R = B * K
    L = len(ps) // 2
    W0, b0 = ps[0], ps[1]
    v0 = x @ W0.T  # (B, O0): the shared prefix
    es, acts = [], []
    e = torch.randn(B, K, W0.shape[0], device=x.device, generator=gen)
    v = v0[:, None, :] + b0 + sigma * e
    a = torch.relu(v) if L > 1 else v
    es.append(e)
    acts.append(a.reshape(R, -1))
    for l in range(1, L):
        W, b = ps[2 * l], ps[2 * l + 1]
        e = torch.randn(R, W.shape[0], device=x.device, generator=gen)
        v = acts[-1] @ W.T + b + sigma * e
        a = torch.relu(v) if l + 1 < L else v
        es.append(e)
        acts.append(a)
    loss = torch.nn.functional.cross_entropy(acts[-1], y.repeat_interleave(K), reduction="none").view(B, K)
    base = (loss.sum(1, keepdim=True) - loss) / (K - 1)  # leave-one-out
    w = (loss - base) / R
    g0 = torch.einsum("bk,bko->bo", w, es[0])  # copy sum: B rows
    ps[0].grad = (g0.T @ x) / sigma
    ps[1].grad = g0.sum(0) / sigma
    wr = w.reshape(R)
    for l in range(1, L):
        ps[2 * l].grad = torch.einsum("r,ro,ri->oi", wr, es[l], acts[l - 1]) / sigma
        ps[2 * l + 1].grad = torch.einsum("r,ro->o", wr, es[l]) / sigma
    return loss.mean()


def bp_grads(ps, x, y):
    for p in ps:
        p.grad = None
    loss = torch.nn.functional.cross_entropy(forward(ps, x), y)
    loss.backward()
    return loss.detach()


def step_fn(args, ps, gen):
    if args.estimator == "ulr":
        return lambda x, y: ulr_grads(ps, x, y, args.copies, args.sigma, gen)
    return lambda x, y: bp_grads(ps, x, y)


def digits(args, dev):
    xtr, ytr, xte, yte = load(args.data)
    xtr, ytr = torch.from_numpy(xtr).to(dev), torch.from_numpy(ytr).long().to(dev)
    xte, yte = torch.from_numpy(xte).to(dev), torch.from_numpy(yte).long().to(dev)
    gen = torch.Generator(device=dev).manual_seed(args.seed)
    ps = init_params([784, 256, 10], dev, gen)
    opt = torch.optim.Adam(ps, lr=args.lr)
    grad = step_fn(args, ps, gen)
    n, B = xtr.shape[0], args.batch
    steps = (n + B - 1) // B
    for _ in range(3):  # warm-up (kernels, allocator): gradients only, no update
        grad(xtr[:B], ytr[:B])
    for p in ps:
        p.grad = None
    sync(dev)
    epochs, elapsed, t93 = [], 0.0, None
    for ep in range(args.epochs):
        perm = torch.randperm(n, device=dev, generator=gen)
        sync(dev)
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=dev)
        for s in range(steps):
            idx = perm[s * B:(s + 1) * B]
            loss_sum += grad(xtr[idx], ytr[idx]) * idx.shape[0]
            opt.step()
        sync(dev)
        secs = time.perf_counter() - t0
        elapsed += secs
        with torch.no_grad():
            acc = (forward(ps, xte).argmax(1) == yte).float().mean().item()
        if t93 is None and acc >= 0.93:
            t93 = elapsed
        epochs.append({"epoch": ep + 1, "seconds": secs, "loss": loss_sum.item() / n, "valAccuracy": acc})
    secs = sorted(e["seconds"] for e in epochs)
    med = secs[len(secs) // 2]
    return {"library": "pytorch " + torch.__version__, "estimator": args.estimator, "copies": args.copies if args.estimator == "ulr" else None,
            "lr": args.lr, "sigma": args.sigma if args.estimator == "ulr" else None, "batch": B, "epochs": epochs, "median_epoch_s": med, "median_step_ms": 1000 * med / steps,
            "test_accuracy": epochs[-1]["valAccuracy"], "time_to_93_s": t93, "tf32": torch.backends.cuda.matmul.allow_tf32}


def macs(widths, B, estimator, K):
    m = 0
    for l in range(len(widths) - 1):
        io = widths[l] * widths[l + 1]
        m += B * io * (2 if l == 0 else 3) if estimator == "bp" else (B if l == 0 else B * K) * io * 2
    return m


def throughput(args, dev):
    widths = [int(w) for w in args.widths.split(",")]
    K = args.copies if args.estimator == "ulr" else 1
    B = args.rows // K
    gen = torch.Generator(device=dev).manual_seed(args.seed)
    ps = init_params(widths, dev, gen)
    opt = torch.optim.Adam(ps, lr=1e-4)
    grad = step_fn(args, ps, gen)
    x = torch.randn(B, widths[0], device=dev, generator=gen)
    y = torch.randint(0, widths[-1], (B,), device=dev, generator=gen)
    for _ in range(3):
        grad(x, y)
        opt.step()
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        grad(x, y)
        opt.step()
    sync(dev)
    secs = (time.perf_counter() - t0) / args.steps
    flops = 2 * macs(widths, B, args.estimator, K)
    return {"library": "pytorch " + torch.__version__, "estimator": args.estimator, "copies": K if args.estimator == "ulr" else None,
            "rows": B * K, "batch": B, "widths": widths, "step_ms": 1000 * secs, "tflops": flops / secs / 1e12,
            "tf32": torch.backends.cuda.matmul.allow_tf32,
            "peak_mem_gib": torch.cuda.max_memory_allocated() / 2 ** 30 if dev.type == "cuda" else None}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["digits", "throughput"])
    ap.add_argument("--data")
    ap.add_argument("--estimator", choices=["bp", "ulr"], default="ulr")
    ap.add_argument("--copies", type=int, default=32)
    ap.add_argument("--sigma", type=float, default=0.1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rows", type=int, default=65536)
    ap.add_argument("--widths", default="784,4096,4096,10")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tf32", type=int, default=1)
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = bool(args.tf32)
    torch.backends.cudnn.allow_tf32 = bool(args.tf32)
    dev = torch.device(args.device)
    out = digits(args, dev) if args.mode == "digits" else throughput(args, dev)
    out["device"] = torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"
    print(json.dumps(out))


if __name__ == "__main__":
    main()
