#!/usr/bin/env python3
"""PyTorch CPU reference of the transformer bench (npm run bench -- transformer): ms per BP training step of the same
character-level model as bench/cases/transformer.ts, on the same shapes, batch, optimizer and threads.

Model: token embedding (V -> D) + learned positions (T x D); per block (pre-LN)
x += out(attention(qkv(layerNorm(x)))) with causal softmax(q kᵀ / √d) v over `heads` heads of width d = D / heads,
x += W2 gelu(W1 layerNorm(x)) with W1: D -> 4D; then layerNorm and a dense head D -> V at every position; loss: the
mean cross-entropy of the next token over all positions. Adam 1e-3. The batches are windows of the token ids read
from --tokens (int32, one window of T + 1 ids a row: inputs and next-token labels), in order.

  transformer.py --tokens FILE --vocab V [--context 64 --dim 64 --heads 4 --layers 2 --batch 32
                 --warmup 3 --steps 10 --threads 2]
Prints one JSON line: {"library", "threads", "stepMs": [...], "cpuMs": [...]}: each timed step's wall time and the
process's CPU time in it (all threads).
"""
import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x):
        B, T, D = x.shape
        h, d = self.heads, D // self.heads
        q, k, v = self.qkv(self.norm1(x)).split(D, dim=2)
        q, k, v = (z.view(B, T, h, d).transpose(1, 2) for z in (q, k, v))  # (B, h, T, d)
        s = q @ k.transpose(2, 3) / math.sqrt(d)
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        a = s.masked_fill(mask, float("-inf")).softmax(-1) @ v
        x = x + self.out(a.transpose(1, 2).reshape(B, T, D))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class Gpt(nn.Module):
    def __init__(self, vocab, context, dim, heads, layers):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim)
        self.position = nn.Parameter(torch.randn(context, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, ids):
        return self.head(self.norm(self.blocks(self.embedding(ids) + self.position)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--vocab", type=int, required=True)
    for name, default in [("context", 64), ("dim", 64), ("heads", 4), ("layers", 2), ("batch", 32),
                          ("warmup", 3), ("steps", 10), ("threads", 2)]:
        ap.add_argument(f"--{name}", type=int, default=default)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    ids = torch.from_numpy(np.fromfile(a.tokens, dtype=np.int32).astype(np.int64))
    rows = (ids.numel() - 1) // a.context
    x = ids[: rows * a.context].view(rows, a.context)
    y = ids[1: rows * a.context + 1].view(rows, a.context)
    model = Gpt(a.vocab, a.context, a.dim, a.heads, a.layers)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = rows // a.batch
    ms, cpu = [], []
    for i in range(a.warmup + a.steps):
        r0 = (i % batches) * a.batch
        xb, yb = x[r0: r0 + a.batch], y[r0: r0 + a.batch]
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xb).reshape(-1, a.vocab), yb.reshape(-1))
        loss.backward()
        opt.step()
        if i >= a.warmup:
            ms.append(1000 * (time.perf_counter() - t0))
            cpu.append(1000 * (time.process_time() - c0))
    print(json.dumps({"library": "pytorch " + torch.__version__, "threads": torch.get_num_threads(),
                      "stepMs": ms, "cpuMs": cpu, "loss": loss.item()}))


if __name__ == "__main__":
    main()
