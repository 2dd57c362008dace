"""Rectified flow: noising, the training loss, timestep sampling and the time shift.

Convention (Liu et al., arXiv 2209.03003; SD3, arXiv 2403.03206): `x_t = (1 - t)·x0 + t·ε`,
t = 1 is pure noise, and the model predicts the velocity `v = ε − x0`, so an Euler step
from t to t' is `x + (t' − t)·v`.
"""

from __future__ import annotations

import math

import torch


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t for a per-sample or per-cell t broadcastable to x0 `(B, C, T, H, W)`."""
    return (1.0 - t) * x0 + t * noise


def sample_logit_normal(n: int, generator: torch.Generator | None = None, mean: float = 0.0, std: float = 1.0,
                        device: torch.device | str = "cpu") -> torch.Tensor:
    """Logit-normal t (SD3 §3.1): more training at mid noise, where the velocity is hardest."""
    return torch.sigmoid(mean + std * torch.randn(n, generator=generator, device=device))


def shift_for_tokens(tokens: int, reference_tokens: int = 180, base_shift: float = 1.5) -> float:
    """More tokens need more steps at high noise (SD3 §5.3.2): shift grows like sqrt(tokens)."""
    return min(8.0, max(1.0, base_shift * math.sqrt(tokens / reference_tokens)))


def shift_time(t: torch.Tensor, shift: float) -> torch.Tensor:
    """Map t in [0, 1] to `shift·t / (1 + (shift − 1)·t)`; shift > 1 spends longer near t = 1."""
    return shift * t / (1.0 + (shift - 1.0) * t)


def timesteps(steps: int, shift: float = 1.0, start: float = 1.0) -> torch.Tensor:
    """Decreasing schedule of `steps + 1` times from `start` (≤ 1, less for edits) to 0."""
    t = torch.linspace(1.0, 0.0, steps + 1)
    t = shift_time(t, shift)
    return t * start


def expand_token_t(t_tokens: torch.Tensor, patch: int) -> torch.Tensor:
    """Per-token t `(B, T, h, w)` -> per latent cell `(B, 1, T, h·p, w·p)` for blending."""
    return t_tokens.repeat_interleave(patch, dim=-2).repeat_interleave(patch, dim=-1)[:, None]


def flow_loss(v_pred: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted mean squared velocity error; known cells carry weight 0."""
    err = (v_pred.float() - (noise - x0).float()).pow(2).mean(dim=1, keepdim=True)
    return (err * weight).sum() / weight.sum().clamp_min(1.0)
