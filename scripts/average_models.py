"""Write a model directory whose weights are a weighted average of two others' (a "model soup").

Both must have the same architecture, and should share a parent: a fine-tune and the model it
started from, whose weights lie in one basin where a straight line between them stays good
(Wortsman et al., arXiv 2109.01903 and 2203.05482). Stop 25 fine-tuned the default DiT with
wide and tall frames: 16:9 rose from 0.574 to 0.715, but square fell from 0.766 to 0.730. Their
average scored between them (0.746 square, 0.695 at 16:9) and was not kept.
The config (sampling defaults, name) is the first model's.

    python scripts/average_models.py runs/old runs/cpu-dit-wide/model runs/soup --weight 0.5

(runs/old: the stop 24 weights, commit ab058b2; `weights/` is the fine-tune now.)
"""

from __future__ import annotations

import argparse

import torch

from cinegen.backends.native import NativeBackend
from cinegen.errors import UserError


def averaged_state(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor], weight: float) -> dict:
    """(1 - weight) · first + weight · second, tensor by tensor; integer buffers from `first`. The
    two come from modules of one config, so their names and shapes match."""
    return {
        name: torch.lerp(a.float(), second[name].float(), weight).to(a.dtype) if a.is_floating_point() else a
        for name, a in first.items()
    }


def average(first: str, second: str, dest: str, weight: float) -> None:
    if not 0.0 <= weight <= 1.0:
        raise UserError(f"--weight {weight}: the second model's share must be in 0..1")
    cpu = torch.device("cpu")
    a = NativeBackend.load(first, cpu, text_encoder=False)
    b = NativeBackend.load(second, cpu, text_encoder=False)
    if a.config.autoencoder != b.config.autoencoder or a.config.denoiser != b.config.denoiser:
        raise UserError(f"{first} and {second} have different architectures")
    a.vae.load_state_dict(averaged_state(a.vae.state_dict(), b.vae.state_dict(), weight))
    a.dit.load_state_dict(averaged_state(a.dit.state_dict(), b.dit.state_dict(), weight))
    NativeBackend.save(dest, a.config, a.vae, a.dit)
    print(f"{dest}: {1 - weight:g} x {first} + {weight:g} x {second}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first", help="model directory (its config is kept)")
    parser.add_argument("second", help="model directory of the same architecture")
    parser.add_argument("dest", help="model directory to write")
    parser.add_argument("--weight", type=float, default=0.5, help="the second model's share (default 0.5)")
    args = parser.parse_args()
    try:
        average(args.first, args.second, args.dest, args.weight)
    except UserError as error:
        raise SystemExit(f"error: {error}") from None
