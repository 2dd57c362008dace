"""Write a model directory whose weights are a weighted average of two others' (a "model soup").

Both must have the same architecture, and should share a parent: a fine-tune and the model it
started from, whose weights lie in one basin where a straight line between them stays good
(Wortsman et al., arXiv 2109.01903 and 2203.05482). The config (sampling defaults, name) is the
first model's.

The default DiT since stop 26 is such an average: the stop 25 weights and their fine-tune with the
default sizes weighted up (`configs/cpu-dit-default-sizes.toml`), half and half. On training
captions (224 clips an aspect) the fine-tune gained 0.018 at 1:1 and 0.044 at 16:9 and lost 0.053
at 9:16; the average kept a part of each gain and lost 0.004 (benchmarks/results/stop26):

    python scripts/average_models.py weights runs/cpu-dit-default-sizes/model runs/soup --weight 0.5

(weights/ as it was at stop 25, commit 083e103.)
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
