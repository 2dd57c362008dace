"""Does the denoiser's latent jitter in still regions make the generated clips' flicker? A hold in latent
space, like the 8-bit hold quantizer: a latent cell keeps its previous value unless its mean |change|
over channels exceeds TAU. Decoded with the shipped VAE and scored (seed 0 of each held-out caption,
the latents of `heldout_latents.py`; TAU 0 is no hold).

    python benchmarks/results/stop34/latent_hold.py runs/held34/a11.npz 0,0.05,0.1,0.2
"""
import json
import sys

import numpy as np
import torch

from cinegen.evaluate import evaluate_clip
from cinegen.pipeline import to_uint8
from cinegen.train import load_autoencoder


def hold(latent: torch.Tensor, tau: float) -> torch.Tensor:
    """`latent` (C, T, h, w): each cell keeps its last kept value while it moves by at most `tau`."""
    kept = [latent[:, 0]]
    for t in range(1, latent.shape[1]):
        moved = (latent[:, t] - kept[-1]).abs().mean(0, keepdim=True) > tau
        kept.append(torch.where(moved, latent[:, t], kept[-1]))
    return torch.stack(kept, dim=1)


def main() -> None:
    torch.set_num_threads(1)
    data = np.load(sys.argv[1])
    vae = load_autoencoder("weights").eval()
    seed0 = data["seeds"] == 0
    for tau in (float(x) for x in sys.argv[2].split(",")):
        rows = []
        for latent, prompt in zip(data["latent"][seed0], data["prompts"][seed0]):
            held = hold(torch.from_numpy(latent), tau) if tau > 0 else torch.from_numpy(latent)
            with torch.inference_mode():
                video = to_uint8(vae.decode(held[None]).clamp(-1, 1))[0]
            rows.append(evaluate_clip(video, 8.0, str(prompt)))
        flicker = [r["flicker"] for r in rows if r["flicker"] is not None]
        print(json.dumps({"tau": tau, "clips": len(rows), "adherence": round(float(np.mean([r["adherence"] for r in rows])), 4),
                          "flicker": round(float(np.mean(flicker)), 4)}
                         | {k: round(float(np.mean([r[k] for r in rows if r.get(k) is not None])), 3)
                            for k in ("shape_right", "size_right", "motion_right")}), flush=True)


if __name__ == "__main__":
    main()
