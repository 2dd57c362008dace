"""The detector bar of issue 3: on random world scenes (mixed sizes, aspects, fps, 1–3
objects, every event kind) the evaluator must find every requested attribute.

Prints one JSON line per condition (clean; mp4 CRF 23 + Gaussian noise sigma 8) with the
mean adherence and each part, then the failures. Usage:
    OMP_NUM_THREADS=1 python benchmarks/world_detector.py [--scenes 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from cinegen.evaluate import evaluate_clip
from cinegen.world import random_scene, render, write_caption
from cinegen.world.degrade import add_noise, mp4_roundtrip

SIZES = [
    (128, 128),
    (160, 96),
    (96, 160),
    (256, 144),
    (200, 200),
    (320, 180),
    (96, 96),
    (144, 256),
    (480, 270),
]
FPS = [4, 8, 12, 16, 24, 30]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    results: dict[str, list[dict]] = {"clean": [], "mp4_noise8": []}
    start = time.time()
    for k in range(args.scenes):
        scene = random_scene(rng)
        caption = write_caption(scene, rng)
        width, height = SIZES[int(rng.integers(len(SIZES)))]
        fps = FPS[int(rng.integers(len(FPS)))]
        seconds = float(rng.uniform(2.0, 4.0))
        clip = render(scene, width=width, height=height, fps=fps, seconds=seconds, seed=k, masks=False).frames
        noisy = add_noise(mp4_roundtrip(clip, fps), 8.0, rng)
        for name, frames in (("clean", clip), ("mp4_noise8", noisy)):
            r = evaluate_clip(frames, fps, caption)
            r |= {"scene": k, "size": f"{width}x{height}", "seconds": round(seconds, 2)}
            results[name].append(r)
    for name, rows in results.items():
        line = {"condition": name, "scenes": len(rows), "seconds": round(time.time() - start, 1)}
        for key in ("adherence", "color_right", "shape_right", "size_right", "motion_right", "events_right",
                    "background_right", "camera_right"):  # fmt: skip
            vals = [r[key] for r in rows if r[key] is not None]
            line[key] = round(float(np.mean(vals)), 4) if vals else None
        print(json.dumps(line), flush=True)
    for name, rows in results.items():
        for r in rows:
            if r["adherence"] < 1:
                parts = {k: r[k] for k in r if k.endswith("_right") and r[k] not in (None, 1.0)}
                print(json.dumps({"condition": name, "fail": r["prompt"], "size": r["size"], "fps": r["fps"],
                                  "parts": parts}))  # fmt: skip


if __name__ == "__main__":
    main()
