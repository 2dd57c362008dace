"""The 8-bit hold quantizer (`pipeline.to_uint8`'s `hold`, HOLD_LEVELS = 1 shipped) at other levels, on
the shipped VAE's round trips (gate on) of the clips of `sharpen_ceiling.py`: PSNR, flicker, and the
mean change of still pixels per band of distance to an object (stop 32's split).

    python benchmarks/results/stop34/round_trip_hold.py
"""
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "stop32"))
sys.path.insert(0, str(Path(__file__).parent))
from flicker_by_distance import split  # noqa: E402
from sharpen_ceiling import psnr  # noqa: E402

from cinegen.data import read_captions  # noqa: E402
from cinegen.pipeline import to_uint8, to_video_tensor  # noqa: E402
from cinegen.train import load_autoencoder  # noqa: E402
from cinegen.world import parse_caption, render  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    vae = load_autoencoder("weights").eval()
    captions = read_captions("benchmarks/results/stop10/validation_captions_2.txt")[:32]
    world = [render(parse_caption(c), width=128, height=128, fps=8.0, num_frames=17, seed=0).frames for c in captions]
    with torch.inference_mode():
        decoded = [vae.decode(vae.encode(to_video_tensor(w))).clamp(-1, 1) for w in world]
    for hold in (0, 1, 2, 3, 4, 6):
        clips = [to_uint8(d, hold)[0] for d in decoded]
        bands = split(clips)
        print(json.dumps({"hold_levels": hold, "psnr": psnr(clips, world), "flicker": bands["flicker"]}
                         | {k: v["mean"] for k, v in bands.items() if k.endswith("px")}), flush=True)


if __name__ == "__main__":
    main()
