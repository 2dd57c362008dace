"""Any size: time and peak memory of an image and a short clip at large sizes (1920x1080 included).

    nice -n 19 env OMP_NUM_THREADS=1 python benchmarks/sizes.py --model weights --steps 4

Each size runs in a fresh process so peak RSS is its own; one JSON line per (size, frames).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import json, resource, sys, time, torch
torch.set_num_threads(1)
from cinegen.pipeline import GenerateRequest, Pipeline
model, w, h, frames, steps = sys.argv[1] or None, *map(int, sys.argv[2:6])
pipe = Pipeline.load(model, device="cpu")
started = time.perf_counter()
out = pipe.run(GenerateRequest("a big red ball moves right on a plain white background", width=w, height=h,
                               frames=frames, steps=steps)).frames
print(json.dumps({"shape": list(out.shape), "wall_s": round(time.perf_counter() - started, 2),
                  "peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--sizes", default="64x64,1920x1080,1080x1920")
    ap.add_argument("--frames", type=int, nargs="+", default=[1, 5])
    args = ap.parse_args()
    for size in args.sizes.split(","):
        w, h = size.split("x")
        for frames in args.frames:
            out = subprocess.run(
                [sys.executable, "-c", CHILD, args.model, w, h, str(frames), str(args.steps)],
                capture_output=True,
                text=True,
            )
            row = {"benchmark": "sizes", "size": size, "frames": frames, "steps": args.steps}
            if out.returncode:
                row["error"] = (out.stderr.strip().splitlines() or ["?"])[-1][:300]
            else:
                row |= json.loads(out.stdout.strip().splitlines()[-1])
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
