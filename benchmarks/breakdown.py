"""Where a model fails: the per-clip rows of `quality.py --out` grouped by what the caption asks.

    python benchmarks/breakdown.py CLIPS.jsonl [--by motion,shape,size,pattern] [--compare OTHER.jsonl]

Prints one JSON line per group (e.g. {"by": "motion", "value": "left", "clips": 24, ...}) with
the mean of each part, for the caption's first object (motion, shape, size) or its background
(pattern, tone). With `--compare`, each line also carries the other file's means for the same
group under "other": two models, or a model and its VAE round trip (`--vae-ceiling`).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from quality import PARTS, mean_of

from cinegen.world import parse_caption

GROUPS = {
    "all": lambda scene: "all",  # every row: the mean of shards' rows merged (quality.py --shard)
    "motion": lambda scene: scene.objects[0].motion or "unsaid",
    "shape": lambda scene: scene.objects[0].shape or "unsaid",
    "size": lambda scene: scene.objects[0].size,
    "pattern": lambda scene: scene.background.pattern,
    "tone": lambda scene: scene.background.tone or "unsaid",
}


def grouped(rows: list[dict], by: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        out[GROUPS[by](parse_caption(row["prompt"]))].append(row)
    return dict(sorted(out.items()))


def read_rows(path: str) -> list[dict]:
    if not Path(path).is_file():
        raise SystemExit(f"breakdown.py: no such file {path!r}; give the JSONL that quality.py --out wrote")
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clips", help="per-clip rows written by quality.py --out")
    ap.add_argument("--by", default="motion,shape,size,pattern", help=f"any of {', '.join(GROUPS)}")
    ap.add_argument("--compare", default=None, help="a second --out file, scored on the same captions")
    args = ap.parse_args()
    keys = [k.strip() for k in args.by.split(",") if k.strip()]
    unknown = [k for k in keys if k not in GROUPS]
    if unknown:
        ap.error(f"unknown --by {', '.join(unknown)}; allowed: {', '.join(GROUPS)}")
    rows = read_rows(args.clips)
    other = read_rows(args.compare) if args.compare else None
    for by in keys:
        other_groups = grouped(other, by) if other else {}
        for value, group in grouped(rows, by).items():
            line = {"by": by, "value": value, "clips": len(group)} | {p: mean_of(group, p) for p in PARTS}
            if other is not None:
                theirs = other_groups.get(value, [])
                line["other"] = {"clips": len(theirs)} | {p: mean_of(theirs, p) for p in PARTS}
            print(json.dumps(line))


if __name__ == "__main__":
    main()
