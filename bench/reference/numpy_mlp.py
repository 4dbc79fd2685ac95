#!/usr/bin/env python3
"""NumPy reference benchmark: MLP 784-256-10 trained with hand-written backprop.

ReLU hidden layer, softmax cross-entropy (mean over batch), Adam
(lr 1e-3, betas 0.9/0.999, eps 1e-8, PyTorch-style bias correction),
batch 64, float32 throughout. Data: the digits task's MNIST digits
(data/digits.gz, see data/README.md), the same split as of.datasets.digits().

Prints one JSON line to stdout.
"""
import argparse
import gzip
import json
import os
import statistics
import time

import numpy as np

IN, HID, OUT = 784, 256, 10
BATCH = 64
LR, BETA1, BETA2, EPS = 1e-3, 0.9, 0.999, 1e-8


def load_digits(file):
    # labels (uint8, grouped by class), then 784 pixel levels k per digit standing for round(k / 255, 3)
    with gzip.open(file, "rb") as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8)
    rows = raw.size // (IN + 1)
    labels = raw[:rows]
    level = np.array([round(k * 1000 / 255) / 1000 for k in range(256)], dtype=np.float64)
    pixels = level[raw[rows:]].reshape(rows, IN)
    xs_tr, ys_tr, xs_te, ys_te = [], [], [], []
    for c in range(10):
        imgs = pixels[labels == c]
        n = imgs.shape[0]
        k = (n * 8) // 10  # floor(n * 0.8)
        xs_tr.append(imgs[:k]); ys_tr.append(np.full(k, c, dtype=np.int64))
        xs_te.append(imgs[k:]); ys_te.append(np.full(n - k, c, dtype=np.int64))
    x_tr, x_te = np.concatenate(xs_tr), np.concatenate(xs_te)
    return (np.ascontiguousarray(x_tr, dtype=np.float32), np.concatenate(ys_tr),
            np.ascontiguousarray(x_te, dtype=np.float32), np.concatenate(ys_te))


def glorot(rng, fan_in, fan_out):
    bound = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, size=(fan_in, fan_out)).astype(np.float32)


def init_params(rng):
    return [glorot(rng, IN, HID), np.zeros(HID, np.float32),
            glorot(rng, HID, OUT), np.zeros(OUT, np.float32)]


class Trainer:
    """Holds params, Adam state and preallocated scratch buffers."""

    def __init__(self, params):
        self.p = params
        self.m = [np.zeros_like(a) for a in params]
        self.v = [np.zeros_like(a) for a in params]
        self.tmp = [np.empty_like(a) for a in params]
        self.t = 0
        self.eye = np.eye(OUT, dtype=np.float32)

    def step(self, x, y):
        W1, b1, W2, b2 = self.p
        bs = x.shape[0]
        # forward
        h = x @ W1
        h += b1
        np.maximum(h, 0.0, out=h)
        z = h @ W2
        z += b2
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)          # z = softmax probs
        # backward: dL/dlogits = (p - onehot) / bs
        z -= self.eye[y]
        z *= np.float32(1.0 / bs)
        gW2 = h.T @ z
        gb2 = z.sum(axis=0)
        dh = z @ W2.T
        dh *= (h > 0)
        gW1 = x.T @ dh
        gb1 = dh.sum(axis=0)
        self.adam((gW1, gb1, gW2, gb2))

    def adam(self, grads):
        self.t += 1
        bc1 = 1.0 - BETA1 ** self.t
        bc2 = 1.0 - BETA2 ** self.t
        step_size = np.float32(LR / bc1)
        inv_sqrt_bc2 = np.float32(1.0 / np.sqrt(bc2))
        b1, b2 = np.float32(BETA1), np.float32(BETA2)
        omb1, omb2 = np.float32(1.0 - BETA1), np.float32(1.0 - BETA2)
        eps = np.float32(EPS)
        for p, g, m, v, tmp in zip(self.p, grads, self.m, self.v, self.tmp):
            m *= b1
            np.multiply(g, omb1, out=tmp); m += tmp           # m = b1 m + (1-b1) g
            v *= b2
            np.multiply(g, g, out=tmp); tmp *= omb2; v += tmp  # v = b2 v + (1-b2) g^2
            np.sqrt(v, out=tmp)                                # denom = sqrt(v)/sqrt(bc2) + eps
            tmp *= inv_sqrt_bc2
            tmp += eps
            np.divide(m, tmp, out=tmp)
            tmp *= step_size
            p -= tmp


def predict(params, x):
    W1, b1, W2, b2 = params
    h = x @ W1
    h += b1
    np.maximum(h, 0.0, out=h)
    return (h @ W2 + b2).argmax(axis=1)


def blas_info():
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        s = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
        oc = blas.get("openblas configuration", "")
        if oc:
            s += " (" + " ".join(oc.split()) + ")"
        return s
    except Exception:
        return "unknown"


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--digits", default=os.path.join(here, "..", "..", "data", "digits.gz"))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args()

    x_tr, y_tr, x_te, y_te = load_digits(os.path.normpath(args.digits))
    n = x_tr.shape[0]
    rng = np.random.default_rng(args.seed)
    params = init_params(rng)

    # Warm-up on a throwaway copy (own rng so the timed run's rng stream is untouched).
    if args.warmup > 0:
        wt = Trainer([a.copy() for a in params])
        wrng = np.random.default_rng(args.seed + 12345)
        for _ in range(args.warmup):
            idx = wrng.integers(0, n, size=BATCH)
            wt.step(x_tr[idx], y_tr[idx])
        del wt

    tr = Trainer(params)
    epoch_seconds, step_ms = [], []
    pc = time.perf_counter
    for _ in range(args.epochs):
        e0 = pc()
        perm = rng.permutation(n)
        for s in range(0, n, BATCH):
            t0 = pc()
            idx = perm[s:s + BATCH]
            tr.step(x_tr[idx], y_tr[idx])
            step_ms.append((pc() - t0) * 1e3)
        epoch_seconds.append(pc() - e0)

    acc = float((predict(tr.p, x_te) == y_te).mean())
    print(json.dumps({
        "impl": "numpy-bp",
        "epochs": args.epochs,
        "batch": BATCH,
        "train_rows": int(n),
        "test_rows": int(x_te.shape[0]),
        "epoch_seconds": [round(e, 6) for e in epoch_seconds],
        "median_epoch_s": round(statistics.median(epoch_seconds), 6) if epoch_seconds else None,
        "median_step_ms": round(statistics.median(step_ms), 6) if step_ms else None,
        "test_accuracy": round(acc, 6),
        "numpy": np.__version__,
        "blas": blas_info(),
    }))


if __name__ == "__main__":
    main()
