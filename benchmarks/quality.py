"""Quality of a model on world captions it never saw in training, scored by `cinegen eval`.

Generates every caption of `benchmarks/heldout_captions.txt` (excluded from the training
caption pool) with seeds 0..S-1, scores each clip with the pixel detector, and prints one
JSON line per aspect plus the reference flicker of rendered world clips of the same captions.

    python benchmarks/quality.py [--model weights] [--captions 64] [--seeds 4] [--aspects 1:1,16:9,9:16]

`--captions-file` scores other captions instead (one per line), e.g. training captions for
choosing sampling settings; its lines say "quality_captions_file", never "quality_heldout".

`--vae-ceiling` scores no generated clip: it renders each caption with the world renderer
(one clip per seed), passes it through the model's VAE (encode, decode) and scores that. A
denoiser that made the very latents of the rendered clip would score this, so it bounds what
any denoiser trained on these latents can reach. Its lines say "quality_vae_ceiling".
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from cinegen.data import read_captions
from cinegen.evaluate import evaluate_clip
from cinegen.pipeline import GenerateRequest, Pipeline, to_uint8, to_video_tensor
from cinegen.world import parse_caption, render

HELDOUT = Path(__file__).with_name("heldout_captions.txt")
PARTS = ("adherence", "color_right", "shape_right", "size_right", "motion_right", "background_right", "flicker")


def mean_of(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return round(float(np.mean(values)), 4) if values else None


def rendered(caption: str, geometry, fps: float, seed: int) -> np.ndarray:
    """The world renderer's clip of a caption at the benchmark's geometry."""
    return render(parse_caption(caption), width=geometry.width, height=geometry.height, fps=fps,
                  num_frames=geometry.frames, seed=seed).frames


def vae_round_trip(pipe: Pipeline, frames: np.ndarray) -> np.ndarray:
    """Rendered uint8 frames through the model's VAE and back."""
    with torch.inference_mode():
        latent = pipe.backend.encode_video(to_video_tensor(frames))
        return to_uint8(pipe.backend.decode_latent(latent))[0]


def parse_shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise SystemExit(f"--shard {text!r}: give K/N, e.g. 0/2") from None
    if not 0 <= k < n:
        raise SystemExit(f"--shard {text!r}: K must be 0..N-1")
    return k, n


def benchmark_name(args: argparse.Namespace) -> str:
    if args.vae_ceiling:
        return "quality_vae_ceiling"
    return "quality_captions_file" if args.captions_file else "quality_heldout"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--captions", type=int, default=64)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--aspects", default="1:1")
    parser.add_argument("--size", type=int, default=96, help="short side in pixels")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--fps", type=float, default=8.0)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--guidance-min-t", type=float, default=None, help="guide only while t >= this")
    parser.add_argument("--out", default=None, help="write per-clip rows (JSONL) here")
    parser.add_argument("--captions-file", default=None, help="captions to score instead of the held-out ones")
    parser.add_argument("--vae-ceiling", action="store_true",
                        help="score VAE round trips of rendered clips instead of generated clips")
    parser.add_argument("--shard", default=None, metavar="K/N",
                        help="only the captions whose index is K modulo N, for N processes at once; "
                             "their --out rows together equal one run's (breakdown.py --by all)")
    args = parser.parse_args()

    caption_path = Path(args.captions_file) if args.captions_file else HELDOUT
    captions = read_captions(caption_path)
    indexed = list(enumerate(captions[: args.captions]))
    if args.shard:
        k, n = parse_shard(args.shard)
        indexed = indexed[k::n]
    pipe = Pipeline.load(args.model, device="cpu")
    rows_out = open(args.out, "w") if args.out else None
    for aspect in args.aspects.split(","):
        rows, started = [], time.time()
        geometry = pipe.geometry(GenerateRequest("x", aspect=aspect, size=args.size, seconds=args.seconds,
                                                 fps=args.fps))
        if args.vae_ceiling and geometry.render != (geometry.width, geometry.height):
            raise SystemExit(f"--vae-ceiling needs a size the model renders as is (multiples of "
                             f"{pipe.backend.size_multiple}); {geometry.width}x{geometry.height} is padded")
        for i, caption in indexed:
            if args.vae_ceiling:
                videos = [vae_round_trip(pipe, rendered(caption, geometry, args.fps, 1000 * i + s))
                          for s in range(args.seeds)]
            else:
                req = GenerateRequest(caption, aspect=aspect, size=args.size, seconds=args.seconds, fps=args.fps,
                                      steps=args.steps, guidance=args.guidance, guidance_min_t=args.guidance_min_t,
                                      seed=0, batch=args.seeds)
                videos = pipe.run(req).videos
            for seed, frames in enumerate(videos):
                row = evaluate_clip(frames, args.fps, caption)
                row = {k: row.get(k) for k in PARTS} | {"prompt": caption, "seed": seed, "aspect": aspect}
                rows.append(row)
                if rows_out:
                    rows_out.write(json.dumps(row) + "\n")
        reference = []
        for i, caption in indexed[:16]:
            clip = rendered(caption, geometry, args.fps, seed=i)
            reference.append(evaluate_clip(clip, args.fps, caption).get("flicker"))
        reference = [r for r in reference if r is not None]
        print(json.dumps({
            "benchmark": benchmark_name(args),
            "model": pipe.model_name, "aspect": aspect, "steps": args.steps, "guidance": args.guidance,
            "guidance_min_t": args.guidance_min_t,
            "width": geometry.width, "height": geometry.height, "frames": geometry.frames,
            "clips": len(rows), "captions": len(indexed), "seeds": args.seeds,
            **({"shard": args.shard} if args.shard else {}),
            **{f"mean_{k}": mean_of(rows, k) for k in PARTS},
            "world_flicker": round(float(np.mean(reference)), 4) if reference else None,
            "seconds": round(time.time() - started, 1),
        }), flush=True)


if __name__ == "__main__":
    main()
