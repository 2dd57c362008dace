"""What a model's denoiser has learned of each latent channel, on held-out clips.

Renders the first N held-out captions (17 frames at --size px), encodes them with the model's
VAE and prints one JSON line per noise level t with the denoiser's mean squared velocity error
per channel (plain text→video: every token at t). A channel the denoiser knows nothing about
scores about 2 at t = 0.5 and 1.5 at t = 0.2 or 0.8 (the error of the best guess from x_t alone
for unit-variance content), so the numbers show whether channels a widened model added
(`load_narrower`) are being learned. Then one line gives each channel's correlation between
neighbouring latent cells in space and in time: structure a denoiser can learn, where white
noise would read 0. The last line gives how much the decoder uses each channel: the PSNR lost
when that channel alone is held at its mean.

    python benchmarks/latent_channels.py --model weights [--captions 16] [--size 128]
"""

from __future__ import annotations

import argparse
import json

import torch
from quality import HELDOUT
from vae_psnr import psnr

from cinegen.backends.native import NativeBackend
from cinegen.data import read_captions, to_video
from cinegen.flow import add_noise
from cinegen.text import TextEncoder
from cinegen.world import parse_caption, render


def neighbour_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return round(float((a * b).mean() / (a.std() * b.std())), 3)


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="weights")
    parser.add_argument("--captions", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    model = NativeBackend.load(args.model, torch.device("cpu"), text_encoder=False)
    captions = read_captions(HELDOUT)[: args.captions]
    clips = [render(parse_caption(c), width=args.size, height=args.size, fps=8, num_frames=17, seed=i).frames
             for i, c in enumerate(captions)]
    video = torch.stack([to_video(clip) for clip in clips])
    x0 = model.vae.encode(video)
    text = TextEncoder().encode(captions)
    b, channels, frames, height, width = x0.shape
    p = model.dit.config.patch_size
    generator = torch.Generator().manual_seed(0)
    for t in (0.2, 0.5, 0.8):
        noise = torch.randn(x0.shape, generator=generator)
        t_tokens = torch.full((b, frames, height // p, width // p), t)
        v = model.dit(add_noise(x0, noise, t), t_tokens, text.tokens, text.mask, text.pooled, torch.full((b,), 8.0))
        error = (v - (noise - x0)).pow(2).mean(dim=(0, 2, 3, 4))
        print(json.dumps({"benchmark": "latent_channel_error", "model": args.model, "t": t,
                          "error": [round(e, 3) for e in error.tolist()]}), flush=True)
    print(json.dumps({"benchmark": "latent_channel_structure", "model": args.model,
                      "space": [neighbour_correlation(x0[:, c, :, :, 1:], x0[:, c, :, :, :-1]) for c in range(channels)],
                      "time": [neighbour_correlation(x0[:, c, 1:], x0[:, c, :-1]) for c in range(channels)]}))
    # How much the decoder uses each channel: the reconstruction's PSNR when that channel alone is
    # held at its mean (normalised 0), against all channels as encoded.
    full = psnr(model.vae.decode(x0), video)
    drops = []
    for c in range(channels):
        held = x0.clone()
        held[:, c] = 0
        drops.append(round(float(full - psnr(model.vae.decode(held), video)), 3))
    print(json.dumps({"benchmark": "latent_channel_decoder_use", "model": args.model, "psnr_db": round(float(full), 2),
                      "drop_db": drops}))


if __name__ == "__main__":
    main()
