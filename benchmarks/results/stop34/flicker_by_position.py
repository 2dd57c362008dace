"""Does the VAE's round-trip flicker depend on where a frame sits in the clip? For each frame change
of rendered validation clips (seed 0, 128x128, 8 fps), the flicker of still pixels more than 2 px
from an object (the part of the flicker away from object rims) and within 2 px of one, for:
- `whole`: the 17-frame clip's round trip;
- `late alone`: frames 8-16 encoded and decoded as a clip of their own (same content, early
  positions), beside the same frames of `whole`;
- `window K`: the whole clip's latents, each latent frame decoded inside a fresh clip of itself
  and the K-1 before it (positions the decoder trained on), its frames kept.
Also the mean PSNR and flicker (stop 32's split) of whole and windowed decodes.

    python benchmarks/results/stop34/flicker_by_position.py [VAE] [CAPTIONS]
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "stop32"))
sys.path.insert(0, str(Path(__file__).parent))
from flicker_by_distance import split, still_changes  # noqa: E402
from sharpen_ceiling import psnr  # noqa: E402

from cinegen.data import read_captions  # noqa: E402
from cinegen.pipeline import to_uint8, to_video_tensor  # noqa: E402
from cinegen.train import load_autoencoder  # noqa: E402
from cinegen.world import parse_caption, render  # noqa: E402


def by_frame_change(clips: list[np.ndarray]) -> dict:
    """Mean |change| of still pixels within 2 px of an object and beyond, per frame change."""
    total, count = np.zeros((2, len(clips[0]) - 1)), np.zeros((2, len(clips[0]) - 1))
    for frames in clips:
        for t, (change, still, distance) in enumerate(still_changes(frames)):
            for band, pixels in enumerate((still & (distance < 2), still & (distance >= 2))):
                total[band, t] += change[pixels].sum()
                count[band, t] += pixels.sum()
    rim, beyond = total / np.maximum(count, 1)
    return {"rim": [round(float(x), 2) for x in rim], "beyond_2px": [round(float(x), 3) for x in beyond]}


def windowed_decode(vae, latent: torch.Tensor, window: int) -> torch.Tensor:
    mean, std = vae._stats(latent)
    raw, f = latent * std + mean, vae.config.time_factor
    pieces = [vae.decode_raw(raw[:, :, :1])]
    for i in range(1, raw.shape[2]):
        pieces.append(vae.decode_raw(raw[:, :, max(0, i - window + 1) : i + 1])[:, :, -f:])
    return vae.gated(torch.cat(pieces, dim=2))


def main() -> None:
    torch.set_num_threads(1)
    source = sys.argv[1] if len(sys.argv) > 1 else "weights"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    vae = load_autoencoder(source).eval()
    captions = read_captions("benchmarks/results/stop10/validation_captions_2.txt")[:n]
    world = [render(parse_caption(c), width=128, height=128, fps=8.0, num_frames=17, seed=0).frames for c in captions]
    head = {"vae": source, "captions": n}
    with torch.inference_mode():
        latents = [vae.encode(to_video_tensor(w)) for w in world]
        whole = [to_uint8(vae.decode(z).clamp(-1, 1))[0] for z in latents]
        late = [to_uint8(vae.decode(vae.encode(to_video_tensor(w[8:]))).clamp(-1, 1))[0] for w in world]
        print(json.dumps(head | {"decode": "whole", "psnr": psnr(whole, world)} | split(whole)))
        print(json.dumps(head | {"decode": "whole"} | by_frame_change(whole)))
        print(json.dumps(head | {"decode": "whole, frames 8-16"} | by_frame_change([c[8:] for c in whole])))
        print(json.dumps(head | {"decode": "frames 8-16 alone"} | by_frame_change(late)), flush=True)
        for window in (2, 3, 4):
            clips = [to_uint8(windowed_decode(vae, z, window).clamp(-1, 1))[0] for z in latents]
            print(json.dumps(head | {"decode": f"window {window}", "psnr": psnr(clips, world)} | split(clips)))
            print(json.dumps(head | {"decode": f"window {window}"} | by_frame_change(clips)), flush=True)


if __name__ == "__main__":
    main()
