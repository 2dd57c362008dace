"""VAE round trips of the first N rendered validation clips (validation_captions_1.txt, 128 px, 17 frames):
PSNR, flicker, adherence:
    python benchmarks/results/stop30/ceiling.py MODEL_DIR N [THREADS]
"""
import json
import sys

import numpy as np
import torch

from cinegen.data import read_captions
from cinegen.evaluate import evaluate_clip
from cinegen.pipeline import Pipeline, to_uint8, to_video_tensor
from cinegen.world import parse_caption, render

torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
pipe = Pipeline.load(sys.argv[1], device="cpu")
caps = read_captions("benchmarks/results/stop10/validation_captions_1.txt")[: int(sys.argv[2])]
rows, psnrs = [], []
for i, cap in enumerate(caps):
    clip = render(parse_caption(cap), width=128, height=128, fps=8, num_frames=17, seed=1000 * i).frames
    with torch.inference_mode():
        out = to_uint8(pipe.backend.decode_latent(pipe.backend.encode_video(to_video_tensor(clip))))[0]
    mse = ((out.astype(np.float32) - clip.astype(np.float32)) ** 2).mean()
    psnrs.append(10 * np.log10(255 ** 2 / mse))
    rows.append(evaluate_clip(out, 8.0, cap))
keys = ("adherence", "shape_right", "motion_right", "flicker")
print(json.dumps({"model": sys.argv[1], "psnr": round(float(np.mean(psnrs)), 2), **{k: round(float(np.mean([r[k] for r in rows if r.get(k) is not None])), 4) for k in keys}}), flush=True)
