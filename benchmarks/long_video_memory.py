"""Peak memory of long videos: windows + per-window decode keep it flat as duration grows.

    nice -n 19 env OMP_NUM_THREADS=1 python benchmarks/long_video_memory.py --model weights --seconds 10 60

Each duration runs in a fresh process (peak RSS is per process); one JSON line per duration with
the peak RSS, the RSS after loading the model (what the generation itself adds is the difference),
and the ratio to the first duration.
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
pipe = Pipeline.load(sys.argv[1] or None, device="cpu")
pipe.run(GenerateRequest("warm up", frames=1, steps=1))
loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
frames = pipe.run(GenerateRequest(sys.argv[3], seconds=float(sys.argv[2]), seed=0)).frames
print(json.dumps({"frames": len(frames), "loaded_kib": loaded, "wall_s": time.perf_counter() - started,
                  "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="")
    ap.add_argument("--seconds", type=float, nargs="+", default=[10.0, 60.0])
    ap.add_argument("--prompt", default="a big red ball moves right on a plain white background")
    args = ap.parse_args()
    first = None
    for seconds in args.seconds:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, args.model, str(seconds), args.prompt],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        first = first or row
        row |= {
            "benchmark": "long_video_memory",
            "seconds": seconds,
            "peak_mib": round(row["peak_kib"] / 1024, 1),
            "loaded_mib": round(row["loaded_kib"] / 1024, 1),
            "added_mib": round((row["peak_kib"] - row["loaded_kib"]) / 1024, 1),
            "peak_ratio_to_first": round(row["peak_kib"] / first["peak_kib"], 3),
            "wall_s": round(row["wall_s"], 2),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
