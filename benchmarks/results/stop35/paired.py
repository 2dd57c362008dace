"""Paired difference of two `decoder_on_latents.py` outputs (the same latents): mean ± standard error
of adherence and flicker, clip by clip.

    python benchmarks/results/stop35/paired.py A.jsonl B.jsonl
"""
import json
import sys

import numpy as np


def rows(path: str) -> dict:
    return {(r["prompt"], r["seed"]): r for r in map(json.loads, open(path)) if "prompt" in r}


def main() -> None:
    a, b = rows(sys.argv[1]), rows(sys.argv[2])
    keys = sorted(a.keys() & b.keys())
    out = {"clips": len(keys)}
    for metric in ("adherence", "flicker", "shape_right", "motion_right", "color_right", "size_right"):
        pairs = [(a[k][metric], b[k][metric]) for k in keys if a[k][metric] is not None and b[k][metric] is not None]
        d = np.array([y - x for x, y in pairs], dtype=float)
        out[metric] = {"a": round(float(np.mean([x for x, _ in pairs])), 4), "b": round(float(np.mean([y for _, y in pairs])), 4),
                       "diff": round(float(d.mean()), 4), "se": round(float(d.std(ddof=1) / np.sqrt(len(d))), 4)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
