"""Round trips through weights/'s VAE of still and moving world clips, 128 px, 17 frames: flicker per
frame transition, and the latents' change between latent frames:
    python benchmarks/results/stop30/static.py
"""
import numpy as np
import torch

from cinegen.pipeline import Pipeline, to_uint8, to_video_tensor
from cinegen.world import parse_caption, render
from cinegen.world.detect import classify, downscale

torch.set_num_threads(2)
pipe = Pipeline.load(None, device="cpu")
def fl(frames):
    labels, gray = classify(downscale(frames)[0])
    static = (labels < 0)[1:] & (labels < 0)[:-1]
    d = np.abs(gray[1:] - gray[:-1])
    return [round(float(d[t][static[t]].mean()), 3) for t in range(len(d))]
for cap in ["The small blue triangle stands still, on a gray background",
            "A large red ball rests on a black checkerboard background",
            "A large red ball moves right on a black checkerboard background"]:
    clip = render(parse_caption(cap), width=128, height=128, fps=8, num_frames=17, seed=0).frames
    with torch.inference_mode():
        lat = pipe.backend.encode_video(to_video_tensor(clip))
        dl = (lat[0, :, 1:] - lat[0, :, :-1]).abs().mean(dim=(0, 2, 3))
        dec = pipe.backend.decode_latent(lat)
        # identical latents: repeat latent frame 1
        same = lat.clone()
        same[:, :, 1:] = lat[:, :, 1:2]
        dec_same = pipe.backend.decode_latent(same)
    print(cap)
    print("  world", np.mean(fl(clip)), " latent frame diffs", [round(float(x), 4) for x in dl], "latent std", round(float(lat.std()), 3))
    print("  round trip per transition", fl(to_uint8(dec)[0]))
    print("  repeated latent, per transition", fl(to_uint8(dec_same)[0]))
    print("  repeated latent, hold 0", fl(to_uint8(dec_same, 0)[0]))
