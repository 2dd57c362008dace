"""Render speed: a 2 s, 16 fps, 128x128 clip must take well under one training step (~1 s).

Prints one JSON line per setting (median of repeats). Usage:
    OMP_NUM_THREADS=1 python benchmarks/world_render_speed.py
"""

from __future__ import annotations

import json
import time

import numpy as np

from cinegen.world import random_scene, render

SETTINGS = [
    dict(width=128, height=128, fps=16, seconds=2.0),
    dict(width=96, height=96, fps=8, seconds=2.0),
    dict(width=256, height=144, fps=24, seconds=2.0),
    dict(width=640, height=360, fps=24, seconds=2.0),
]


def main(repeats: int = 10) -> None:
    for setting in SETTINGS:
        rng = np.random.default_rng(0)
        times = []
        for k in range(repeats):
            scene = random_scene(rng)
            start = time.perf_counter()
            render(scene, **setting, seed=k, masks=False)
            times.append(time.perf_counter() - start)
        print(json.dumps({**setting, "median_s": round(float(np.median(times)), 4), "max_s": round(max(times), 4)}))


if __name__ == "__main__":
    main()
