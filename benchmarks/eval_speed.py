"""Evaluator speed on clips like the default model's (96x96, 17-33 frames, mp4 + noise).

The model's quality report scores ~300 generated clips, so `evaluate_clip` must take well
under 1 s per clip on one core. Prints one JSON line: CPU seconds per clip (mean, max; and mean wall time) over
`--clips` random world scenes. Usage:
    OMP_NUM_THREADS=1 python benchmarks/eval_speed.py [--clips 20] [--seed 0] [--size 96]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from cinegen.evaluate import evaluate_clip
from cinegen.world import random_scene, render, write_caption
from cinegen.world.degrade import add_noise, mp4_roundtrip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=96)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    clips = []
    for k in range(args.clips):
        scene = random_scene(rng)
        fps = 8
        n = int(rng.integers(17, 34))
        frames = render(
            scene, width=args.size, height=args.size, fps=fps, num_frames=n, seed=k, masks=False
        ).frames
        # Generated clips are noisy: time the evaluator on degraded frames, its real input.
        clips.append((add_noise(mp4_roundtrip(frames, fps), 8.0, rng), fps, write_caption(scene, rng)))
    evaluate_clip(*clips[0])  # warm-up: imports and first-call caches are not per-clip cost
    # CPU time of this process is the cost on one core (OMP_NUM_THREADS=1), and unlike wall
    # time it does not grow when other jobs share the machine.
    cpu, wall = [], []
    for frames, fps, caption in clips:
        c0, w0 = time.process_time(), time.perf_counter()
        evaluate_clip(frames, fps, caption)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    line = {
        "clips": len(cpu),
        "size": f"{args.size}x{args.size}",
        "cpu_mean_s": round(float(np.mean(cpu)), 4),
        "cpu_max_s": round(float(np.max(cpu)), 4),
        "wall_mean_s": round(float(np.mean(wall)), 4),
    }
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
