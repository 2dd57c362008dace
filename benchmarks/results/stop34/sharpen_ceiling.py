"""Would sharper object rims bring the VAE's round trips to the flicker bar? A fixed edge sharpener
(toggle mapping: where a window's luminance range exceeds CONTRAST levels, each pixel takes the
colour of the window's darkest or brightest pixel, whichever is nearer in RGB) applied to the
shipped VAE's round trips (gate on) of rendered validation clips, scored with stop 32's flicker
split by distance to the nearest object. Same clips as stop 33's `round_trip_rims.py`.

    python benchmarks/results/stop34/sharpen_ceiling.py [CAPTIONS]
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

sys.path.insert(0, str(Path(__file__).parents[1] / "stop32"))
from flicker_by_distance import split  # noqa: E402

from cinegen.data import read_captions  # noqa: E402
from cinegen.pipeline import to_uint8, to_video_tensor  # noqa: E402
from cinegen.train import load_autoencoder  # noqa: E402
from cinegen.world import parse_caption, render  # noqa: E402

LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def toggle(frames: np.ndarray, window: int, contrast: float) -> np.ndarray:
    r = window // 2
    out = []
    for frame in frames.astype(np.float32):
        padded = np.pad(frame, ((r, r), (r, r), (0, 0)), mode="edge")
        patches = sliding_window_view(padded, (window, window), axis=(0, 1))  # H, W, 3, win, win
        patches = patches.reshape(*frame.shape[:2], 3, -1)
        luma = np.einsum("hwck,c->hwk", patches, LUMA)
        bright = np.take_along_axis(patches, luma.argmax(-1)[:, :, None, None], -1)[..., 0]
        dark = np.take_along_axis(patches, luma.argmin(-1)[:, :, None, None], -1)[..., 0]
        nearer = np.where((((frame - bright) ** 2).sum(-1) < ((frame - dark) ** 2).sum(-1))[..., None], bright, dark)
        strong = (luma.max(-1) - luma.min(-1)) > contrast
        out.append(np.where(strong[..., None], nearer, frame))
    return np.stack(out).round().clip(0, 255).astype(np.uint8)


def psnr(clips: list[np.ndarray], world: list[np.ndarray]) -> float:
    mse = [np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2) for a, b in zip(clips, world)]
    return round(float(np.mean([10 * np.log10(255.0**2 / max(m, 1e-10)) for m in mse])), 2)


def main() -> None:
    torch.set_num_threads(1)
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 32
    vae = load_autoencoder("weights").eval()
    captions = read_captions("benchmarks/results/stop10/validation_captions_2.txt")[:n]
    world = [render(parse_caption(c), width=128, height=128, fps=8.0, num_frames=17, seed=0).frames for c in captions]
    with torch.inference_mode():
        round_trips = [to_uint8(vae.decode(vae.encode(to_video_tensor(w))).clamp(-1, 1))[0] for w in world]
    print(json.dumps({"clips": "world", "captions": n} | split(world)), flush=True)
    print(json.dumps({"clips": "round trips", "captions": n, "psnr": psnr(round_trips, world)} | split(round_trips)))
    for window, contrast in [(3, 40.0), (3, 80.0), (5, 40.0), (5, 80.0)]:
        sharpened = [toggle(r, window, contrast) for r in round_trips]
        print(json.dumps({"clips": "round trips, sharpened", "window": window, "contrast": contrast, "captions": n,
                          "psnr": psnr(sharpened, world)} | split(sharpened)), flush=True)


if __name__ == "__main__":
    main()
