"""Round trips of rendered validation clips (128 px, 17 frames) with the decoder's FrameNorm statistics
per frame (as trained), clip-wide, or causal cumulative; flicker, PSNR and adherence:
    python benchmarks/results/stop30/norm_ceiling.py 24
"""
import json
import sys

import torch
from ceiling import round_trip_scores  # this folder's

from cinegen.models import autoencoder as A
from cinegen.pipeline import Pipeline

torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
MODE = {"mode": "frame"}
orig = A.FrameNorm.forward
def forward(self, x):
    mode = MODE["mode"]
    if mode == "frame" or not getattr(self, "in_decoder", False):
        return orig(self, x)
    b, c, t, h, w = x.shape
    g = self.num_groups
    xg = x.float().reshape(b, g, c // g, t, h * w)
    m = xg.mean(dim=(2, 4))               # b g t
    sq = (xg ** 2).mean(dim=(2, 4))
    if mode == "clip":
        m = m.mean(2, keepdim=True).expand(-1, -1, t)
        sq = sq.mean(2, keepdim=True).expand(-1, -1, t)
    elif mode == "causal":
        n = torch.arange(1, t + 1, device=x.device)
        m = m.cumsum(2) / n
        sq = sq.cumsum(2) / n
    var = (sq - m ** 2).clamp_min(0)
    y = (xg - m[:, :, None, :, None]) / torch.sqrt(var[:, :, None, :, None] + self.eps)
    y = y.reshape(b, c, t, h, w)
    return y * self.weight[None, :, None, None, None] + self.bias[None, :, None, None, None]
A.FrameNorm.forward = forward
pipe = Pipeline.load(None, device="cpu")
dec = [m for n, m in pipe.backend.vae.named_modules() if isinstance(m, A.FrameNorm) and "decoder" in n]
print("decoder norms", len(dec) if dec else dec)
for m in dec:
    m.in_decoder = True
for mode in ("frame", "clip", "causal"):
    MODE["mode"] = mode
    print(json.dumps({"mode": mode, **round_trip_scores(pipe, int(sys.argv[1]))}), flush=True)
