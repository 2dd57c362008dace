"""Stop 31's generated validation latents (`../stop31/gen_latents.py`: runs/hold/g0.npz, g1.npz; 64
captions x 2 seeds) decoded by the shipped VAE whole, or each latent frame inside a window of WINDOW
latent frames (`flicker_by_position.windowed_decode`), and scored against their captions.

    python benchmarks/results/stop34/windowed_on_clips.py 3     # 0: whole
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from flicker_by_position import windowed_decode  # noqa: E402

from cinegen.evaluate import evaluate_clip  # noqa: E402
from cinegen.pipeline import to_uint8  # noqa: E402
from cinegen.train import load_autoencoder  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    window = int(sys.argv[1])
    vae = load_autoencoder("weights").eval()
    clips = [np.load(f"runs/hold/g{i}.npz") for i in (0, 1)]
    rows = []
    for latent, prompt in zip(np.concatenate([c["latent"] for c in clips]), np.concatenate([c["prompts"] for c in clips])):
        z = torch.from_numpy(latent)[None]
        with torch.inference_mode():
            video = (windowed_decode(vae, z, window) if window else vae.decode(z)).clamp(-1, 1)
        rows.append(evaluate_clip(to_uint8(video)[0], 8.0, str(prompt)))
    flicker = [r["flicker"] for r in rows if r["flicker"] is not None]
    print(json.dumps({"window": window or "whole", "clips": len(rows),
                      "adherence": round(float(np.mean([r["adherence"] for r in rows])), 4),
                      "flicker": round(float(np.mean(flicker)), 4)}
                     | {k: round(float(np.mean([r[k] for r in rows if r.get(k) is not None])), 3)
                        for k in ("color_right", "shape_right", "size_right", "motion_right")}))


if __name__ == "__main__":
    main()
