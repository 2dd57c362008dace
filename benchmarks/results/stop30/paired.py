"""Paired comparison of two quality.py per-clip files of the same clips (mean difference NEW - OLD
± its standard error, per aspect):
    python benchmarks/results/stop30/paired.py ../stop28/val2_me.jsonl val2_still.jsonl
"""

import collections
import json
import sys

import numpy as np


def load(path):
    rows = (json.loads(line) for line in open(path))
    return {(r["prompt"], r["seed"], r["aspect"]): r for r in rows if "prompt" in r}


old, new = load(sys.argv[1]), load(sys.argv[2])
by_aspect = collections.defaultdict(list)
for key in new:
    if key in old:
        by_aspect[key[2]].append(key)
for aspect, keys in by_aspect.items():
    out = {"aspect": aspect, "clips": len(keys)}
    for part in ("adherence", "color_right", "shape_right", "size_right", "motion_right", "flicker"):
        d = [new[k][part] - old[k][part] for k in keys if new[k].get(part) is not None and old[k].get(part) is not None]
        out[part] = f"{np.mean(d):+.4f} ± {np.std(d, ddof=1) / np.sqrt(len(d)):.4f}"
    out["lost"] = sum(new[k]["adherence"] < old[k]["adherence"] for k in keys)
    out["gained"] = sum(new[k]["adherence"] > old[k]["adherence"] for k in keys)
    print(json.dumps(out, ensure_ascii=False))
