"""Decode the latents of gen_latents.py (runs/hold/g0.npz, g1.npz) with an autoencoder run or model
directory (e.g. a temporal-gate checkpoint) and score them: adherence, flicker, parts.

    python benchmarks/results/stop31/gate_on_clips.py runs/vae-gate
"""
import sys

import numpy as np
import torch

from cinegen.evaluate import evaluate_clip
from cinegen.pipeline import to_uint8
from cinegen.train import load_autoencoder

torch.set_num_threads(1)
vae = load_autoencoder(sys.argv[1]).eval()
clips = [np.load(f"runs/hold/g{i}.npz") for i in (0, 1)]
latents = np.concatenate([c["latent"] for c in clips])
prompts = np.concatenate([c["prompts"] for c in clips])
rows = []
for lat, p in zip(latents, prompts):
    with torch.no_grad():
        video = vae.decode(torch.from_numpy(lat)[None]).clamp(-1, 1)
    rows.append(evaluate_clip(to_uint8(video)[0], 8.0, str(p)))
flicker = [r["flicker"] for r in rows if r["flicker"] is not None]
parts = ("color_right", "shape_right", "size_right", "motion_right")
print(round(float(np.mean([r["adherence"] for r in rows])), 4), "flicker", round(float(np.mean(flicker)), 4),
      {k: round(float(np.mean([r[k] for r in rows if r.get(k) is not None])), 3) for k in parts})
