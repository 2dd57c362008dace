"""Generate the first 64 validation captions (seeds 0-1, 128 px, 2 s) with the default model and
keep each clip's latent and the decoder's float output (before the 8-bit hold quantizer).

    python benchmarks/results/stop31/gen_latents.py 0 2 runs/hold/g0.npz 1:1   # and 1 2 ... g1.npz
"""
import sys

import numpy as np
import torch

import cinegen.pipeline as P
from cinegen.data import read_captions
from cinegen.pipeline import GenerateRequest, Pipeline

torch.set_num_threads(1)
shard, n, out, aspect = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
caps = read_captions("benchmarks/results/stop10/validation_captions_2.txt")[:64][shard::n]
floats, lats = [], []
to_uint8 = P.to_uint8


def keep_floats(video, hold=None):
    floats.append(((video.float().clamp(-1, 1) + 1) * 127.5).numpy())
    return to_uint8(video, hold)


P.to_uint8 = keep_floats
pipe = Pipeline.load(None, device="cpu")
decode_latent = pipe.backend.decode_latent


def keep_latent(latent, *args, **kw):
    lats.append(latent.float().numpy())
    return decode_latent(latent, *args, **kw)


pipe.backend.decode_latent = keep_latent
videos, latents, prompts = [], [], []
for c in caps:
    floats.clear()
    lats.clear()
    pipe.run(GenerateRequest(c, aspect=aspect, size=128, seconds=2.0, fps=8.0, seed=0, batch=2))
    for v, lat in zip(floats[-1], lats[-1]):
        videos.append(v.astype(np.float16))
        latents.append(lat)
        prompts.append(c)
np.savez_compressed(out, video=np.stack(videos), latent=np.stack(latents), prompts=np.array(prompts))
