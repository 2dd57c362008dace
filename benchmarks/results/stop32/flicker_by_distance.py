"""Where flicker is: `cinegen.evaluate.flicker` split by each still pixel's distance to the nearest
object pixel (either frame), for the world's rendered clips, their round trips through the model's
VAE (gate included) and the model's generated clips of the same captions (validation captions,
seed 0, 128 px, 17 frames at 8 fps).

    python benchmarks/results/stop32/flicker_by_distance.py [MODEL] [CAPTIONS]
"""
import json
import sys

import numpy as np
import torch
from scipy import ndimage

from cinegen.data import read_captions
from cinegen.pipeline import GenerateRequest, Pipeline, to_uint8, to_video_tensor
from cinegen.world import parse_caption, render
from cinegen.world.detect import classify, downscale

BANDS = [0, 2, 4, 8, 16, 32, 10_000]  # working pixels (128 px clips: pixels)


def still_changes(frames: np.ndarray):
    """Per frame change t: (|change| of gray, still pixels, each pixel's distance to an object in
    either frame), as `cinegen.evaluate.flicker` sees the clip."""
    labels, gray = classify(downscale(frames)[0])
    neutral = labels < 0
    still = neutral[1:] & neutral[:-1]
    change = np.abs(gray[1:] - gray[:-1])
    for t in range(len(change)):
        objects = ~(neutral[t] & neutral[t + 1])
        dist = ndimage.distance_transform_edt(~objects) if objects.any() else np.full(objects.shape, 1e9)
        yield change[t], still[t], dist


def split(clips: list[np.ndarray]) -> dict:
    """Per distance band: its share of still pixels and their mean |change| (levels)."""
    total, count = np.zeros(len(BANDS) - 1), np.zeros(len(BANDS) - 1)
    for frames in clips:
        for change, still, dist in still_changes(frames):
            for b in range(len(BANDS) - 1):
                band = still & (dist >= BANDS[b]) & (dist < BANDS[b + 1])
                total[b] += change[band].sum()
                count[b] += band.sum()
    n = count.sum()
    return {"flicker": round(total.sum() / n, 4)} | {
        f"{BANDS[b]}-{BANDS[b + 1]}px": {"pixels": round(count[b] / n, 3), "mean": round(total[b] / max(count[b], 1), 3),
                                         "share": round(total[b] / total.sum(), 3)}
        for b in range(len(BANDS) - 1)
    }


def main() -> None:
    torch.set_num_threads(1)
    model = sys.argv[1] if len(sys.argv) > 1 else None
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    captions = read_captions("benchmarks/results/stop10/validation_captions_2.txt")[:n]
    pipe = Pipeline.load(model, device="cpu")
    generated = [pipe.run(GenerateRequest(c, size=128, seconds=2.0, fps=8.0, seed=0)).frames for c in captions]
    world = [render(parse_caption(c), width=128, height=128, fps=8.0, num_frames=17, seed=0).frames for c in captions]
    with torch.inference_mode():
        round_trips = [to_uint8(pipe.backend.decode_latent(pipe.backend.encode_video(to_video_tensor(w))))[0]
                       for w in world]
    print(json.dumps({"clips": "world", "captions": n} | split(world)))
    print(json.dumps({"clips": "round trips", "model": model or "weights", "captions": n} | split(round_trips)))
    print(json.dumps({"clips": "generated", "model": model or "weights", "captions": n} | split(generated)))


if __name__ == "__main__":
    main()
