"""Round trips of 16 moving validation clips: flicker as decoded, and with every latent cell whose
8x8 block (grown by one cell) never changes in the clip set to its mean over latent frames 1..k:
    python benchmarks/results/stop30/latfreeze.py
"""
import numpy as np
import torch

from cinegen.data import read_captions
from cinegen.evaluate import evaluate_clip
from cinegen.pipeline import Pipeline, to_uint8, to_video_tensor
from cinegen.world import parse_caption, render

torch.set_num_threads(2)
pipe = Pipeline.load(None, device="cpu")
caps = [c for c in read_captions("benchmarks/results/stop10/validation_captions_1.txt")[:40] if "still" not in c and "rest" not in c][:16]
res = {"plain": [], "frozen_bg": [], "latent_bg_change": []}
for i, cap in enumerate(caps):
    clip = render(parse_caption(cap), width=128, height=128, fps=8, num_frames=17, seed=1000 * i)
    frames = clip.frames
    with torch.inference_mode():
        lat = pipe.backend.encode_video(to_video_tensor(frames))
        out = to_uint8(pipe.backend.decode_latent(lat))[0]
        # latent cells whose 8x8 pixel block never shows a non-background change: freeze to the mean over latent frames 1..
        pix_change = (np.abs(np.diff(frames.astype(np.float32), axis=0)).max(axis=(0, 3)) > 0)  # H W
        still = ~torch.from_numpy(pix_change).reshape(16, 8, 16, 8).any(3).any(1)  # 16x16
        # grow by one latent cell
        grow = torch.nn.functional.max_pool2d((~still).float()[None, None], 3, 1, 1)[0, 0] > 0
        still = ~grow
        d = (lat[0, :, 2:] - lat[0, :, 1:-1]).abs().mean(dim=(0, 1))
        res["latent_bg_change"].append(float(d[still].mean()) if still.any() else None)
        fz = lat.clone()
        fz[:, :, 1:] = torch.where(still[None, None, None], lat[:, :, 1:].mean(2, keepdim=True), lat[:, :, 1:])
        out2 = to_uint8(pipe.backend.decode_latent(fz))[0]
    res["plain"].append(evaluate_clip(out, 8.0, cap)["flicker"])
    res["frozen_bg"].append(evaluate_clip(out2, 8.0, cap)["flicker"])
print({k: round(float(np.mean([x for x in v if x is not None])), 4) for k, v in res.items()})
