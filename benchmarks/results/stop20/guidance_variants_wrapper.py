"""`benchmarks/quality.py` with another way to combine the text-guidance branches (not kept).

    CFG_VARIANT=V python benchmarks/results/stop20/guidance_variants_wrapper.py [quality.py flags]

V: "none" (the shipped v_u + g·(v_c − v_u), computed in two calls), "zero" (CFG-Zero*,
arXiv 2503.18886: v_u scaled by the projection of v_c on it, per clip), "zeroinit" (the same,
and velocity 0 at the first step), "apg" (the guidance update's component parallel to v_c
dropped, after adaptive projected guidance, arXiv 2410.02416; no momentum or norm threshold).
Canvases with condition guidance keep the shipped three-branch rule.
"""

import os
import runpy
import sys

import torch

import cinegen.sampling as sampling

VARIANT = os.environ.get("CFG_VARIANT", "none")
shipped_velocity = sampling.guided_velocity


def combine(v_u: torch.Tensor, v_c: torch.Tensor, g: float) -> torch.Tensor:
    dims = tuple(range(1, v_c.ndim))
    if VARIANT in ("zero", "zeroinit"):
        scale = (v_c * v_u).sum(dims, keepdim=True) / (v_u * v_u).sum(dims, keepdim=True).clamp_min(1e-8)
        return scale * v_u + g * (v_c - scale * v_u)
    if VARIANT == "apg":
        update = v_c - v_u
        unit = v_c / v_c.flatten(1).norm(dim=1).clamp_min(1e-8).view(-1, *[1] * (v_c.ndim - 1))
        parallel = (update * unit).sum(dims, keepdim=True) * unit
        return v_c + (g - 1) * (update - parallel)
    return v_u + g * (v_c - v_u)


def guided_velocity(model, canvas, x, t, known_noisy, cond, uncond, guidance, channels=None):
    if VARIANT == "zeroinit" and t >= 0.999:
        return torch.zeros_like(x)
    three_branches = canvas.mask is not None and guidance.condition != 1.0
    if guidance.text == 1.0 or three_branches or t < guidance.min_t:
        return shipped_velocity(model, canvas, x, t, known_noisy, cond, uncond, guidance, channels)
    one = sampling.Guidance()
    v_c = shipped_velocity(model, canvas, x, t, known_noisy, cond, uncond, one, channels)
    v_u = shipped_velocity(model, canvas, x, t, known_noisy, uncond, uncond, one, channels)
    return combine(v_u, v_c, guidance.text)


if __name__ == "__main__":
    sampling.guided_velocity = guided_velocity
    sys.argv = ["quality.py", *sys.argv[1:]]
    sys.path.insert(0, "benchmarks")
    runpy.run_path("benchmarks/quality.py", run_name="__main__")
