"""VAE round trips of the first N rendered validation clips (validation_captions_1.txt, 128 px, 17 frames):
PSNR, flicker, adherence:
    python benchmarks/results/stop30/ceiling.py MODEL_DIR N [THREADS]
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch

from cinegen.data import read_captions
from cinegen.evaluate import evaluate_clip
from cinegen.pipeline import Pipeline
from cinegen.world import parse_caption, render

sys.path.insert(0, str(Path(__file__).parents[2]))  # benchmarks/, for quality.py's round trip and means
from quality import mean_of, vae_round_trip  # noqa: E402

CAPTIONS = "benchmarks/results/stop10/validation_captions_1.txt"


def round_trip_scores(pipe: Pipeline, clips: int) -> dict:
    """Mean PSNR, adherence, shape, motion and flicker of `clips` round trips through pipe's VAE."""
    rows, psnrs = [], []
    for i, caption in enumerate(read_captions(CAPTIONS)[:clips]):
        clip = render(parse_caption(caption), width=128, height=128, fps=8, num_frames=17, seed=1000 * i).frames
        out = vae_round_trip(pipe, clip)
        mse = ((out.astype(np.float32) - clip.astype(np.float32)) ** 2).mean()
        psnrs.append(10 * np.log10(255**2 / mse))
        rows.append(evaluate_clip(out, 8.0, caption))
    means = {k: mean_of(rows, k) for k in ("adherence", "shape_right", "motion_right", "flicker")}
    return {"psnr": round(float(np.mean(psnrs)), 2), **means}


if __name__ == "__main__":
    torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
    print(json.dumps({"model": sys.argv[1], **round_trip_scores(Pipeline.load(sys.argv[1], device="cpu"), int(sys.argv[2]))}))
