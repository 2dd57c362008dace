"""Frame changes of decoded clips by their place in the latent frame: change k goes from frame k to
k + 1, and crosses from one latent frame to the next when k % 4 == 0 (frame 0 is latent frame 0,
frames 1-4 latent frame 1, ...). Extend joints and loop seams are such crossings. Every 8th of
stop 34's 256 held-out latents (`runs/held34/a11.npz`), decoded by each autoencoder given.

    python benchmarks/results/stop36/boundary_changes.py weights runs/cand36A
"""
import json
import sys

import numpy as np
import torch

from cinegen.pipeline import to_uint8
from cinegen.train import load_autoencoder


def main() -> None:
    torch.set_num_threads(1)
    latents = np.load("runs/held34/a11.npz")["latent"][::8]
    for name in sys.argv[1:]:
        vae = load_autoencoder(name).eval()
        by_phase = np.zeros(4)
        for latent in latents:
            with torch.inference_mode():
                frames = to_uint8(vae.decode(torch.from_numpy(latent)[None]).clamp(-1, 1))[0].astype(np.float32)
            change = np.sqrt(((frames[1:] - frames[:-1]) ** 2).mean(axis=(1, 2, 3)))
            by_phase += [change[p::4].mean() for p in range(4)]
        by_phase /= len(latents)
        print(json.dumps({"vae": name, "clips": len(latents), "rms_change_by_phase": np.round(by_phase, 3).tolist(),
                          "crossing_over_within": round(float(by_phase[0] / by_phase[1:].mean()), 4)}), flush=True)


if __name__ == "__main__":
    main()
