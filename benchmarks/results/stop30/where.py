"""Where the flicker of gen.py's clips is (hold 1): by frame transition and by size of the change:
    python benchmarks/results/stop30/where.py runs/fl/g0.npz runs/fl/g1.npz
"""
import sys

import numpy as np
import torch

from cinegen.pipeline import to_uint8
from cinegen.world.detect import classify, downscale

data = [np.load(f) for f in sys.argv[1:]]
video = np.concatenate([d["video"] for d in data])
hold = 1
per_t = np.zeros(16)
cnt_t = np.zeros(16)
bins = np.array([0, 0.5, 1.5, 3, 6, 12, 24, 256])
hist_sum = np.zeros(len(bins) - 1)
hist_n = np.zeros(len(bins) - 1)
for v in video:
    x = torch.from_numpy(v.astype(np.float32))[None] / 127.5 - 1
    frames = to_uint8(x, hold)[0]
    labels, gray = classify(downscale(frames)[0])
    static = (labels < 0)[1:] & (labels < 0)[:-1]
    d = np.abs(gray[1:] - gray[:-1])
    for t in range(len(d)):
        per_t[t] += d[t][static[t]].sum()
        cnt_t[t] += static[t].sum()
    vals = d[static]
    idx = np.digitize(vals, bins) - 1
    for b in range(len(bins) - 1):
        hist_sum[b] += vals[idx == b].sum()
        hist_n[b] += (idx == b).sum()
print("gray shape", gray.shape)
print("per transition", np.round(per_t / cnt_t, 3).tolist())
tot = hist_sum.sum()
for b in range(len(bins) - 1):
    print(f"|d| in [{bins[b]},{bins[b+1]}): share px {hist_n[b]/hist_n.sum():.3f}  share flicker {hist_sum[b]/tot:.3f}")
print("overall", tot / hist_n.sum())
