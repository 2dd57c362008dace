"""Reconstruction PSNR of a model's VAE on world clips it did not train on.

Training clips come from seeds derived from the training seed; these use a separate seed
stream and sizes/lengths beyond the training buckets. One JSON line per size.

    python benchmarks/vae_psnr.py [--model weights | --run runs/tiny-vae-decoder] [--clips 24] [--captions 32]

With --captions N, also the round trip of the first N held-out captions' rendered clips (17
frames, --size square, one per --seeds), scored by the evaluator like generated clips: the
ceiling a denoiser on this VAE's latents can reach (`quality.py --vae-ceiling` does the same for
a model directory).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from quality import HELDOUT, PARTS, mean_of

from cinegen.data import read_captions, to_video
from cinegen.evaluate import evaluate_clip
from cinegen.pipeline import to_uint8
from cinegen.world import parse_caption, random_scene, render

# Small frames and a long one, then the default model's frames at 1:1, 16:9 and 9:16 (what
# `cinegen generate` renders unless told otherwise).
SIZES = ((64, 64, 9), (96, 96, 17), (144, 80, 33), (128, 128, 17), (224, 128, 17), (128, 224, 17))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a.clamp(-1, 1) - b) ** 2).mean().item()
    return 10 * np.log10(4.0 / max(mse, 1e-12))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model directory (default: weights/)")
    parser.add_argument("--run", default=None, help="or an autoencoder run directory (its EMA weights)")
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--captions", type=int, default=0, help="also score round trips of this many held-out captions")
    parser.add_argument("--size", type=int, default=96, help="side of the round-trip clips in pixels")
    parser.add_argument("--seeds", type=int, default=1, help="round-trip clips per caption")
    args = parser.parse_args()
    if args.run:
        from cinegen.train import load_autoencoder

        vae = load_autoencoder(args.run).eval()  # as the preset it trained
    else:
        from cinegen.backends.native import NativeBackend
        from cinegen.pipeline import DEFAULT_MODEL_DIR

        vae = NativeBackend.load(args.model or DEFAULT_MODEL_DIR, torch.device("cpu"), text_encoder=False).vae
    rng = np.random.default_rng(args.seed)
    for width, height, frames in SIZES if args.clips else ():
        scores = []
        for i in range(args.clips):
            clip = render(random_scene(rng), width=width, height=height, fps=8, num_frames=frames, seed=1000 + i).frames
            video = to_video(clip)[None]
            with torch.no_grad():
                recon = vae.decode_chunked(vae.encode(video))
            scores.append(psnr(recon, video))
        print(json.dumps({"benchmark": "vae_psnr_heldout", "width": width, "height": height, "frames": frames,
                          "clips": args.clips, "mean_psnr_db": round(float(np.mean(scores)), 2),
                          "min_psnr_db": round(float(np.min(scores)), 2)}), flush=True)
    captions = read_captions(HELDOUT)[: args.captions]
    rows = []
    for seed in range(args.seeds):
        for i, caption in enumerate(captions):
            clip = render(parse_caption(caption), width=args.size, height=args.size, fps=8, num_frames=17,
                          seed=1000 * i + seed).frames
            with torch.no_grad():
                recon = to_uint8(vae.decode_chunked(vae.encode(to_video(clip)[None])).clamp(-1, 1))[0]
            rows.append(evaluate_clip(recon, 8, caption))
    if rows:
        print(json.dumps({"benchmark": "vae_round_trip_heldout", "width": args.size, "height": args.size,
                          "frames": 17, "captions": len(captions), "seeds": args.seeds,
                          **{k: mean_of(rows, k) for k in PARTS}}), flush=True)


if __name__ == "__main__":
    main()
