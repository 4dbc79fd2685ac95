#!/usr/bin/env python3
"""PyTorch CPU reference of the speed bench (npm run bench -- speed): ms per training step of the same models,
batch (64 digits) and optimizer (Adam 1e-3) as bench/cases/speed.ts, on the same number of threads.

BP: autograd through torch.nn layers (nn.GRU for the GRU). ULR, written directly: one batched noisy forward of
B·K rows (the first noisy layer's linear part on the B clean rows, then K noisy copies of its pre-activation),
per-row cross-entropy, leave-one-out baseline, row weights w = (l - b) / (B K), and per layer the LR formula
grad W = (1/σ) (diag(w) E)ᵀ A_prev: a GEMM for dense layers, torch.nn.grad.conv2d_weight (the conv's weight
gradient given the output error S = w·E/σ, i.e. the same GEMM over im2col patches) for convs; the first noisy layer
sums its S over each sample's copies first and reduces over B rows. The GRU (gates z, r, candidate on r ⊙ h, noise
on every gate at every step) keeps its input projections X·Wᵀ on B rows and runs its recurrence on B·K rows.

  speed.py MODEL --digits data/digits.gz [--warmup 3 --steps 10 --threads 2]   MODEL: mlp, cnn, gru, rescnn
  speed.py noise [--threads 1]                                                 normals/s of numpy and torch
Prints one JSON line: {"rows": [{"estimator", "stepMs": [...], "cpuMs": [...]}], ...}: each timed step's wall time
and the process's CPU time in it (all threads).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from numpy_mlp import load_digits  # noqa: E402  (the same data and split)

B, K, SIGMA = 64, 32, 0.1


class Unit:
    """A layer with parameters: a linear map of its input, whose pre-activation takes ULR's noise."""

    def noisy(self, a, ulr):
        v = self(a)
        if v.shape[0] == ulr.B:  # the first noisy layer: clean linear part once per sample, then K copies
            v = v.repeat_interleave(ulr.K, 0)
        e = torch.randn(v.shape)
        ulr.record(self, a, e)
        return v + ulr.sigma * e

    def lr_grads(self, a, e, w, ulr):
        self.weight_grad(a, ulr.error(e, w, a.shape[0]))


class Dense(Unit):
    def __init__(self, i, o):
        self.m = torch.nn.Linear(i, o)

    def __call__(self, a):
        return self.m(a)

    def weight_grad(self, a, s):
        self.m.weight.grad = s.T @ a
        self.m.bias.grad = s.sum(0)


class Conv(Unit):  # 3x3, 'same'
    def __init__(self, c, co):
        self.m = torch.nn.Conv2d(c, co, 3, padding=1)

    def __call__(self, a):
        return self.m(a)

    def weight_grad(self, a, s):
        self.m.weight.grad = torch.nn.grad.conv2d_weight(a, self.m.weight.shape, s, padding=1)
        self.m.bias.grad = s.sum((0, 2, 3))


class Gru(Unit):
    """GRU over (rows, T, F): z, r = sigmoid(x W + h U + b), n = tanh(x W_n + (r ⊙ h) U_n + b_n), h = z h + (1 - z) n."""

    def __init__(self, f, h):
        self.H = h
        self.torch_gru = torch.nn.GRU(f, h, batch_first=True)  # for BP
        s = 1 / h ** 0.5
        self.W = torch.empty(3 * h, f).uniform_(-s, s)
        self.U = torch.empty(3 * h, h).uniform_(-s, s)
        self.b = torch.zeros(3 * h)
        self.params = [self.W, self.U, self.b]

    def __call__(self, a):
        return self.torch_gru(a)[1][0]

    def noisy(self, x, ulr):
        H, T = self.H, x.shape[1]
        xp = x @ self.W.T + self.b  # (B, T, 3H): the input projections, once per sample
        if x.shape[0] == ulr.B:
            xp = xp.repeat_interleave(ulr.K, 0)
        rows = xp.shape[0]
        e = torch.randn(rows, T, 3 * H)
        v = xp + ulr.sigma * e
        h = torch.zeros(rows, H)
        hs, rhs = [], []
        for t in range(T):
            g = v[:, t]
            zr = torch.sigmoid(g[:, :2 * H] + h @ self.U[:2 * H].T)
            z, r = zr[:, :H], zr[:, H:]
            rh = r * h
            n = torch.tanh(g[:, 2 * H:] + rh @ self.U[2 * H:].T)
            hs.append(h)
            rhs.append(rh)
            h = z * h + (1 - z) * n
        self.saved = (torch.stack(hs, 1), torch.stack(rhs, 1))
        ulr.record(self, x, e)
        return h

    def lr_grads(self, x, e, w, ulr):
        H = self.H
        hp, rh = self.saved
        s = ulr.error(e, w, e.shape[0])  # (B·K, T, 3H) for U and b
        g = ulr.error(e, w, x.shape[0])  # summed over copies when x is the clean input: W on B rows
        gU = torch.empty_like(self.U)
        gU[:2 * H] = s[..., :2 * H].flatten(0, 1).T @ hp.flatten(0, 1)
        gU[2 * H:] = s[..., 2 * H:].flatten(0, 1).T @ rh.flatten(0, 1)
        self.W.grad = g.flatten(0, 1).T @ x.flatten(0, 1)
        self.U.grad = gU
        self.b.grad = s.sum((0, 1))


class Residual:
    def __init__(self, *items):
        self.items = items


def relu(a):
    return torch.relu(a)


def pool(a):
    return F.max_pool2d(a, 2)


def flatten(a):
    return a.flatten(1)


def last_step(a):  # nn.GRU's output in BP is already the last hidden state
    return a


def forward(items, a, ulr=None):
    for it in items:
        if isinstance(it, Residual):
            out = forward(it.items, a, ulr)
            a = (a.repeat_interleave(ulr.K, 0) if out.shape[0] != a.shape[0] else a) + out
        elif isinstance(it, Unit):
            a = it(a) if ulr is None else it.noisy(a, ulr)
        else:
            a = it(a)
    return a


def units(items):
    for it in items:
        if isinstance(it, Residual):
            yield from units(it.items)
        elif isinstance(it, Unit):
            yield it


def parameters(items):
    ps = []
    for u in units(items):
        ps += u.params if isinstance(u, Gru) else list(u.m.parameters())
    return ps


class Ulr:
    """One ULR step's noise record and the LR formula."""

    def __init__(self, B, K, sigma):
        self.B, self.K, self.sigma, self.records = B, K, sigma, []

    def record(self, unit, a, e):
        self.records.append((unit, a, e))

    def error(self, e, w, rows):
        """S = w·E/σ, per row; over B rows (the first noisy layer) the sum of each sample's K copies."""
        s = e * (w / self.sigma).view(-1, *([1] * (e.dim() - 1)))
        return s.view(self.B, self.K, *e.shape[1:]).sum(1) if rows == self.B else s

    def weights(self, logits, y):
        loss = F.cross_entropy(logits, y.repeat_interleave(self.K), reduction="none").view(self.B, self.K)
        base = (loss.sum(1, keepdim=True) - loss) / (self.K - 1)  # leave-one-out
        return ((loss - base) / (self.B * self.K)).reshape(-1)

    def step(self, items, x, y):
        w = self.weights(forward(items, x, self), y)
        for unit, a, e in self.records:
            unit.lr_grads(a, e, w, self)


@torch.no_grad()
def ulr_step(items, x, y):
    Ulr(B, K, SIGMA).step(items, x, y)


@torch.no_grad()
def ulr_layerwise_step(items, x, y):
    """Dense layers only: a clean forward, then per layer K noisy copies of its pre-activation, the later layers
    clean on B·K rows, and that layer's gradient from the copy sums (B rows)."""
    pre, acts, a = [], [], x
    for it in items:
        acts.append(a)
        a = it(a)
        pre.append(a)
    ulr = Ulr(B, K, SIGMA)
    for i, it in enumerate(items):
        if not isinstance(it, Unit):
            continue
        e = torch.randn(B * K, pre[i].shape[1])
        a = pre[i].repeat_interleave(K, 0) + SIGMA * e
        for later in items[i + 1:]:
            a = later(a)
        it.weight_grad(acts[i], ulr.error(e, ulr.weights(a, y), B))


def bp_step(items, x, y):
    loss = F.cross_entropy(forward(items, x), y)
    loss.backward()


def mlp():
    return [Dense(784, 256), relu, Dense(256, 10)], lambda x: x


def cnn():
    return [Conv(1, 8), relu, pool, Conv(8, 16), relu, pool, flatten, Dense(784, 10)], lambda x: x.view(-1, 1, 28, 28)


def rescnn():
    block = lambda: Residual(Conv(8, 8), relu, Conv(8, 8))
    return [Conv(1, 8), relu, pool, block(), relu, pool, block(), relu, flatten, Dense(392, 10)], lambda x: x.view(-1, 1, 28, 28)


def gru():
    return [Gru(28, 64), Dense(64, 10)], lambda x: x.view(-1, 28, 28)


MODELS = {"mlp": (mlp, ["bp", "ulr", "ulr-layerwise"]), "cnn": (cnn, ["bp", "ulr"]), "gru": (gru, ["bp", "ulr"]), "rescnn": (rescnn, ["bp", "ulr"])}
STEPS = {"bp": bp_step, "ulr": ulr_step, "ulr-layerwise": ulr_layerwise_step}


def time_steps(build, estimator, xs, ys, warmup, steps):
    torch.manual_seed(1)
    items, shape = build()
    ps = parameters(items)
    if estimator == "bp" and isinstance(items[0], Gru):
        ps = list(items[0].torch_gru.parameters()) + parameters(items[1:])
    opt = torch.optim.Adam(ps, lr=1e-3)
    batches = xs.shape[0] // B
    ms, cpu = [], []
    for i in range(warmup + steps):
        j = i % batches
        x, y = shape(xs[j * B:(j + 1) * B]), ys[j * B:(j + 1) * B]
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        STEPS[estimator](items, x, y)
        opt.step()
        if i >= warmup:
            ms.append(1000 * (time.perf_counter() - t0))
            cpu.append(1000 * (time.process_time() - c0))
    return {"stepMs": ms, "cpuMs": cpu}


def noise_rates():
    """Normals per CPU second, float32: numpy's default generator (PCG64, ziggurat) and torch's normal_ (run with
    --threads 1, so CPU time is one core's)."""
    n, reps = 1 << 20, 30
    rng = np.random.default_rng(1)
    out = np.empty(n, np.float32)

    def rate(fill):
        ts = []
        for _ in range(reps):
            t0 = time.process_time()
            fill()
            ts.append(time.process_time() - t0)
        return n / sorted(ts)[len(ts) // 2]

    t = torch.empty(n)
    return {"numpyPerS": rate(lambda: rng.standard_normal(n, dtype=np.float32, out=out)), "torchPerS": rate(lambda: t.normal_())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=[*MODELS, "noise"])
    ap.add_argument("--digits")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    info = {"library": "pytorch " + torch.__version__, "threads": torch.get_num_threads()}
    if args.model == "noise":
        print(json.dumps({**info, **noise_rates()}))
        return
    x, y, _, _ = load_digits(args.digits)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    build, estimators = MODELS[args.model]
    rows = [{"estimator": e, **time_steps(build, e, xs, ys, args.warmup, args.steps)} for e in estimators]
    print(json.dumps({**info, "rows": rows}))


if __name__ == "__main__":
    main()
