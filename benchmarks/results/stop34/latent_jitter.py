"""Mean |change| between consecutive latent frames in still cells (no object within 8 px in any frame
the cell covers), for the default model's generated latents (the first 32 held-out captions, seed 0,
from `heldout_latents.py`) and for the shipped VAE's latents of the same captions' rendered clips.

    python benchmarks/results/stop34/latent_jitter.py runs/held34/a11.npz
"""
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F

from cinegen.pipeline import to_uint8, to_video_tensor
from cinegen.train import load_autoencoder
from cinegen.world import parse_caption, render
from cinegen.world.detect import classify, downscale


def still_cells(frames: np.ndarray) -> torch.Tensor:
    """(latent frames, h, w): True where no object is within 8 px in the frames the cell covers."""
    labels, _ = classify(downscale(frames)[0])
    near = F.max_pool2d(torch.from_numpy((labels >= 0).astype(np.float32))[None], 17, 1, 8)[0]
    groups = [near[:1]] + [near[1 + 4 * k : 5 + 4 * k] for k in range((len(near) - 1) // 4)]
    return torch.stack([F.max_pool2d(g.amax(0)[None, None], 8)[0, 0] for g in groups]) == 0


def jitter(latent: torch.Tensor, still: torch.Tensor) -> float | None:
    change = (latent[:, 1:] - latent[:, :-1]).abs().mean(0)
    both = still[1:] & still[:-1]
    return float(change[both].mean()) if both.any() else None


def main() -> None:
    torch.set_num_threads(1)
    data = np.load(sys.argv[1])
    vae = load_autoencoder("weights").eval()
    seed0 = data["seeds"] == 0
    generated, encoded = [], []
    with torch.inference_mode():
        for latent, prompt in list(zip(data["latent"][seed0], data["prompts"][seed0]))[:32]:
            latent = torch.from_numpy(latent)
            generated.append(jitter(latent, still_cells(to_uint8(vae.decode(latent[None]).clamp(-1, 1))[0])))
            world = render(parse_caption(str(prompt)), width=128, height=128, fps=8.0, num_frames=17, seed=0).frames
            encoded.append(jitter(vae.encode(to_video_tensor(world))[0], still_cells(world)))
    generated = [j for j in generated if j is not None]
    encoded = [j for j in encoded if j is not None]
    print(json.dumps({"measure": "mean |latent change| between latent frames in still cells",
                      "generated": round(float(np.mean(generated)), 4), "clips_generated": len(generated),
                      "encoded_world": round(float(np.mean(encoded)), 4), "clips_encoded": len(encoded)}))


if __name__ == "__main__":
    main()
