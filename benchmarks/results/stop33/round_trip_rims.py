"""Round trips of rendered validation clips through a VAE (an autoencoder run or a model directory):
PSNR, and flicker split by distance to the nearest object (stop 32's `flicker_by_distance.split`).
Same clips as there: validation captions 2, seed 0, 128x128, 17 frames at 8 fps.

    python benchmarks/results/stop33/round_trip_rims.py runs/vae-refiner [CAPTIONS]
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "stop32"))
from flicker_by_distance import split  # noqa: E402

from cinegen.data import read_captions  # noqa: E402
from cinegen.pipeline import to_uint8, to_video_tensor  # noqa: E402
from cinegen.train import load_autoencoder  # noqa: E402
from cinegen.world import parse_caption, render  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    source, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 32
    vae = load_autoencoder(source).eval()
    captions = read_captions("benchmarks/results/stop10/validation_captions_2.txt")[:n]
    world = [render(parse_caption(c), width=128, height=128, fps=8.0, num_frames=17, seed=0).frames for c in captions]
    round_trips, psnr = [], []
    with torch.inference_mode():
        for frames in world:
            video = to_video_tensor(frames)
            out = to_uint8(vae.decode(vae.encode(video)).clamp(-1, 1))[0]
            round_trips.append(out)
            mse = np.mean((out.astype(np.float64) - frames.astype(np.float64)) ** 2)
            psnr.append(10 * np.log10(255.0**2 / max(mse, 1e-10)))
    print(json.dumps({"clips": "round trips", "vae": source, "captions": n, "psnr": round(float(np.mean(psnr)), 2)}
                     | split(round_trips)))


if __name__ == "__main__":
    main()
