"""Flicker and adherence of gen.py's clips rounded with pipeline.to_uint8 at several hold levels:
    python benchmarks/results/stop30/holds.py runs/fl/g0.npz runs/fl/g1.npz
"""
import json
import sys

import numpy as np
import torch

from cinegen.evaluate import evaluate_clip
from cinegen.pipeline import to_uint8

data = [np.load(f) for f in sys.argv[1:]]
video = np.concatenate([d["video"] for d in data])
prompts = np.concatenate([d["prompts"] for d in data])
keys = ("adherence", "color_right", "shape_right", "size_right", "motion_right", "background_right", "flicker")
for hold in (0, 1, 2, 3, 4, 6):
    rows = []
    for v, p in zip(video, prompts):
        x = torch.from_numpy(v.astype(np.float32))[None] / 127.5 - 1
        frames = to_uint8(x, hold)[0]
        rows.append(evaluate_clip(frames, 8.0, str(p)))
    print(json.dumps({"hold": hold, "clips": len(rows), **{k: round(float(np.mean([r[k] for r in rows if r.get(k) is not None])), 4) for k in keys}}), flush=True)
