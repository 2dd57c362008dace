"""Split extend's joint discontinuity into its parts for the shipped model and a candidate: the
change across the joint and the median frame change it is divided by, on the held-out captions
given by index (as `tasks.py --tasks extend --seed 0` renders and runs them).

    python benchmarks/results/stop35/joint_parts.py runs/cand 12 25 39 45 54
"""
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parents[2]))
from tasks import HELDOUT, Bench  # noqa: E402

from cinegen.data import read_captions  # noqa: E402
from cinegen.evaluate import _changes  # noqa: E402
from cinegen.pipeline import Pipeline  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    candidate, indices = sys.argv[1], [int(i) for i in sys.argv[2:]]
    captions = read_captions(HELDOUT)
    for model in ("weights", candidate):
        pipe = Pipeline.load(model, device="cpu")
        with tempfile.TemporaryDirectory() as tmp:
            bench = Bench(pipe, Path(tmp), 0)
            for i in indices:
                clip, path = bench.source(captions[i], i)
                frames, _ = bench.run(prompt=captions[i], task="extend", video=str(path), seconds=2)
                changes = _changes(frames)
                joint = len(clip.frames)
                print(json.dumps({"model": model, "index": i, "joint_change": round(float(changes[joint - 1]), 3),
                                  "median_change": round(float(np.median(changes)), 3),
                                  "ratio": round(float(changes[joint - 1] / max(np.median(changes), 1.0)), 3)}))


if __name__ == "__main__":
    main()
