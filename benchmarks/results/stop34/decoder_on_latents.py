"""Decode the latents of `heldout_latents.py` with an autoencoder (a run or a model directory) and
score each clip with `cinegen.evaluate.evaluate_clip` against its caption: one JSON line per clip,
then the means. Paired comparisons of decoders: same latents, same captions, same seeds.

    python benchmarks/results/stop34/decoder_on_latents.py runs/held34/a11.npz weights > rows.jsonl
"""
import json
import sys

import numpy as np
import torch

from cinegen.evaluate import evaluate_clip
from cinegen.pipeline import to_uint8
from cinegen.train import load_autoencoder

PARTS = ("color_right", "shape_right", "size_right", "motion_right", "background_right")


def main() -> None:
    torch.set_num_threads(1)
    latents_file, source = sys.argv[1], sys.argv[2]
    data = np.load(latents_file)
    vae = load_autoencoder(source).eval()
    rows = []
    for latent, prompt, seed in zip(data["latent"], data["prompts"], data["seeds"]):
        with torch.inference_mode():
            video = vae.decode(torch.from_numpy(latent)[None]).clamp(-1, 1)
        row = evaluate_clip(to_uint8(video)[0], 8.0, str(prompt))
        rows.append(row)
        print(json.dumps({"prompt": str(prompt), "seed": int(seed)} | {k: row.get(k) for k in ("adherence", "flicker", *PARTS)}))
    flicker = [r["flicker"] for r in rows if r["flicker"] is not None]
    print(json.dumps({"latents": latents_file, "vae": source, "clips": len(rows),
                      "adherence": round(float(np.mean([r["adherence"] for r in rows])), 4),
                      "flicker": round(float(np.mean(flicker)), 4)}
                     | {k: round(float(np.mean([r[k] for r in rows if r.get(k) is not None])), 3) for k in PARTS}))


if __name__ == "__main__":
    main()
