"""`flicker_by_position.by_frame_change` on generated clips: the held-out latents of
`heldout_latents.py` (seed 0 of each caption), decoded by each VAE given.

    python benchmarks/results/stop34/generated_by_position.py runs/held34/a11.npz weights runs/vae-long-decoder
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from flicker_by_position import by_frame_change  # noqa: E402

from cinegen.pipeline import to_uint8  # noqa: E402
from cinegen.train import load_autoencoder  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    data = np.load(sys.argv[1])
    latents = data["latent"][data["seeds"] == 0]
    for source in sys.argv[2:]:
        vae = load_autoencoder(source).eval()
        with torch.inference_mode():
            clips = [to_uint8(vae.decode(torch.from_numpy(z)[None]).clamp(-1, 1))[0] for z in latents]
        print(json.dumps({"clips": "generated, held-out 1:1, seed 0", "vae": source, "n": len(clips)}
                         | by_frame_change(clips)), flush=True)


if __name__ == "__main__":
    main()
