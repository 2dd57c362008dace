"""Sample the held-out captions with the default model's denoiser and keep the latents, so that
decoders sharing its encoder (a decoder-only fine-tune) can be scored on the very same clips
(`decoder_on_latents.py`). Seeds 0..SEEDS-1 of each caption in one batch, 128 px short side, 2 s.

    python benchmarks/results/stop34/heldout_latents.py 1:1 4 runs/held34/a11.npz
"""
import sys

import numpy as np
import torch

from cinegen.data import read_captions
from cinegen.pipeline import GenerateRequest, Pipeline


def main() -> None:
    torch.set_num_threads(1)
    aspect, seeds, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    captions = read_captions("benchmarks/heldout_captions.txt")
    pipe = Pipeline.load(None, device="cpu")
    kept: list[np.ndarray] = []
    decode_latent = pipe.backend.decode_latent

    def keep_latent(latent, *args, **kwargs):
        kept.append(latent.float().numpy())
        return decode_latent(latent, *args, **kwargs)

    pipe.backend.decode_latent = keep_latent
    latents, prompts, seed_of = [], [], []
    for i, caption in enumerate(captions):
        kept.clear()
        pipe.run(GenerateRequest(caption, aspect=aspect, size=128, seconds=2.0, fps=8.0, seed=0, batch=seeds))
        latents.extend(kept[-1])
        prompts.extend([caption] * seeds)
        seed_of.extend(range(seeds))
        print(f"{i + 1}/{len(captions)}", flush=True)
    np.savez_compressed(out, latent=np.stack(latents), prompts=np.array(prompts), seeds=np.array(seed_of))


if __name__ == "__main__":
    main()
