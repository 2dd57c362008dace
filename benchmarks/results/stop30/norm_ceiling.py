"""Round trips of rendered validation clips (128 px, 17 frames) with the decoder's FrameNorm statistics
per frame (as trained), clip-wide, or causal cumulative
flicker, PSNR and adherence:
    python benchmarks/results/stop30/norm_ceiling.py 24
"""
import json
import sys

import numpy as np
import torch

from cinegen.data import read_captions
from cinegen.evaluate import evaluate_clip
from cinegen.models import autoencoder as A
from cinegen.pipeline import Pipeline, to_uint8, to_video_tensor
from cinegen.world import parse_caption, render

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
caps = read_captions("benchmarks/results/stop10/validation_captions_1.txt")[: int(sys.argv[1])]
for mode in ("frame", "clip", "causal"):
    MODE["mode"] = mode
    rows, psnrs = [], []
    for i, cap in enumerate(caps):
        clip = render(parse_caption(cap), width=128, height=128, fps=8, num_frames=17, seed=1000 * i).frames
        with torch.inference_mode():
            out = to_uint8(pipe.backend.decode_latent(pipe.backend.encode_video(to_video_tensor(clip))))[0]
        mse = ((out.astype(np.float32) - clip.astype(np.float32)) ** 2).mean()
        psnrs.append(10 * np.log10(255 ** 2 / mse))
        rows.append(evaluate_clip(out, 8.0, cap))
    keys = ("adherence", "shape_right", "motion_right", "flicker")
    print(json.dumps({"mode": mode, "psnr": round(float(np.mean(psnrs)), 2), **{k: round(float(np.mean([r[k] for r in rows if r.get(k) is not None])), 4) for k in keys}}), flush=True)
