"""Where the flicker on still background is: the evaluator's measure (mean |change| of the gray
level on pixels neutral in both frames) split by distance from the objects, and by size of change.

VAE round trips of the first N held-out captions' world clips (objects from the world's truth),
or clips the model generates from the first N training captions (objects as the detector sees
them). 128×128, 17 frames, seed 0. One JSON line each:

    python flicker_where.py --model ../../../weights --clips 16 --source round_trip --hold 0
    python flicker_where.py --model ../../../weights --clips 16 --source generated [--hold 0]
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt

import cinegen.pipeline
from cinegen.data import read_captions, to_video
from cinegen.pipeline import GenerateRequest, Pipeline, to_uint8
from cinegen.world import parse_caption, render
from cinegen.world.detect import classify, downscale

BENCHMARKS = Path(__file__).parents[2]
DISTANCES = (0, 2, 4, 8, 16, np.inf)  # pixels from the nearest object pixel of either frame
CHANGES = (0, 0.5, 1.5, 2.5, 4.5, 8.5, np.inf)  # gray levels


def clips(source: str, model: str, count: int):
    """(uint8 frames, per frame an object mask or None) for each clip."""
    if source == "round_trip":
        vae = Pipeline.load(model, device="cpu").backend.vae
        for i, caption in enumerate(read_captions(BENCHMARKS / "heldout_captions.txt")[:count]):
            clip = render(parse_caption(caption), width=128, height=128, fps=8, num_frames=17, seed=1000 * i)
            with torch.no_grad():
                latent = vae.encode(to_video(clip.frames)[None])
                frames = to_uint8(vae.decode_chunked(latent).clamp(-1, 1))[0]
            masks = [np.any([o.mask for o in truth.objects if o.mask is not None] + [np.zeros((128, 128), bool)], axis=0)
                     for truth in clip.truth]
            yield frames, masks
    else:
        pipe = Pipeline.load(model, device="cpu")
        captions = read_captions(BENCHMARKS / "results/stop10/validation_captions_2.txt")[:count]
        for caption in captions:
            yield np.asarray(pipe.run(GenerateRequest(caption, seed=0, width=128, height=128, frames=17)).frames), None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--source", choices=("round_trip", "generated"), default="round_trip")
    parser.add_argument("--hold", type=float, default=cinegen.pipeline.HOLD_LEVELS,
                        help="pipeline.HOLD_LEVELS (0 = plain rounding, as before stop 27)")
    args = parser.parse_args()
    cinegen.pipeline.HOLD_LEVELS = args.hold
    torch.set_num_threads(1)
    by_distance = np.zeros((len(DISTANCES) - 1, 2))  # summed change, pixels
    by_change = np.zeros((len(CHANGES) - 1, 2))
    for frames, masks in clips(args.source, args.model, args.clips):
        labels, gray = classify(downscale(frames)[0])
        for t in range(len(frames) - 1):
            objects = (masks[t] | masks[t + 1]) if masks else (labels[t] >= 0) | (labels[t + 1] >= 0)
            distance = distance_transform_edt(~objects) if objects.any() else np.full(objects.shape, np.inf)
            still = (labels[t] < 0) & (labels[t + 1] < 0)
            change = np.abs(gray[t + 1].astype(np.float32) - gray[t].astype(np.float32))[still]
            for table, key, edges in ((by_distance, distance[still], DISTANCES), (by_change, change, CHANGES)):
                index = np.digitize(key, edges[1:-1], right=True)
                table[:, 0] += np.bincount(index, weights=change, minlength=len(table))
                table[:, 1] += np.bincount(index, minlength=len(table))
    total, pixels = by_distance.sum(axis=0)

    def rows(table, edges):
        return [{"from": float(lo), "to": float(hi), "share_of_pixels": round(n / pixels, 4),
                 "mean_change": round(s / max(n, 1), 3), "share_of_flicker": round(s / total, 3)}
                for (s, n), lo, hi in zip(table, edges[:-1], edges[1:])]

    print(json.dumps({"benchmark": "flicker_where", "source": args.source, "clips": args.clips, "hold": args.hold,
                      "flicker": round(total / pixels, 4), "by_distance_px": rows(by_distance, DISTANCES),
                      "by_change_levels": rows(by_change, CHANGES)}), flush=True)


if __name__ == "__main__":
    main()
