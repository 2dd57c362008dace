"""Paired comparison of two quality.py per-clip files: python runs/paired.py OLD NEW"""
import sys, json, collections, numpy as np
def load(f):
    return {(r["prompt"], r["seed"], r["aspect"]): r for r in (json.loads(l) for l in open(f)) if "prompt" in r}
old, new = load(sys.argv[1]), load(sys.argv[2])
keys = [k for k in new if k in old]
by = collections.defaultdict(list)
for k in keys: by[k[2]].append(k)
for a, ks in by.items():
    out = {"aspect": a, "clips": len(ks)}
    for p in ("adherence", "color_right", "shape_right", "size_right", "motion_right", "flicker"):
        d = [new[k][p] - old[k][p] for k in ks if new[k].get(p) is not None and old[k].get(p) is not None]
        out[p] = f"{np.mean(d):+.4f} ± {np.std(d, ddof=1) / np.sqrt(len(d)):.4f}"
    out["lost"] = sum(new[k]["adherence"] < old[k]["adherence"] for k in ks)
    out["gained"] = sum(new[k]["adherence"] > old[k]["adherence"] for k in ks)
    print(json.dumps(out))
