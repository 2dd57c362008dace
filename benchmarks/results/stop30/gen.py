"""Generate the first 32 validation captions (validation_captions_2.txt) at 128 px, seeds 0-1, keeping
the decoder's float output before it is rounded to 8 bits (for holds.py and where.py). From the repository root:
    OMP_NUM_THREADS=1 python benchmarks/results/stop30/gen.py K 2 runs/fl/gK.npz   # K = 0, 1
"""
import sys

import numpy as np
import torch

import cinegen.pipeline as P
from cinegen.data import read_captions
from cinegen.pipeline import GenerateRequest, Pipeline

torch.set_num_threads(1)
shard, n, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
caps = read_captions("benchmarks/results/stop10/validation_captions_2.txt")[:32][shard::n]
store = []
orig = P.to_uint8
def keep(video, hold=None):
    store.append(((video.float().clamp(-1, 1) + 1) * 127.5).to(torch.float16).numpy())
    return orig(video, hold)
P.to_uint8 = keep
pipe = Pipeline.load(None, device="cpu")
floats, prompts = [], []
for c in caps:
    store.clear()
    pipe.run(GenerateRequest(c, aspect="1:1", size=128, seconds=2.0, fps=8.0, seed=0, batch=2))
    for v in store[-1]:
        floats.append(v)
        prompts.append(c)
    print(c, flush=True)
np.savez_compressed(out, video=np.stack(floats), prompts=np.array(prompts))
