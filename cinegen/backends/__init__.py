"""Backends: the one interface between the sampler/tasks and a concrete model family.

A backend encodes text, encodes and decodes video, and predicts the flow velocity for a
latent batch at per-token timesteps. The native cinegen model implements it
(`cinegen.backends.native`); open-weight families (Wan, LTX-Video, CogVideoX) implement it
in their own modules. The sampler and the task builders never change per family.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch


class Backend(Protocol):
    name: str
    latent_channels: int
    spatial_factor: int  # pixels per latent cell
    time_factor: int  # video frames per latent frame after the first
    patch: int  # latent cells per token side
    device: torch.device
    dtype: torch.dtype

    @property
    def size_multiple(self) -> int:
        """Width and height must be multiples of this many pixels."""

    def encode_text(self, prompts: list[str], fps: float) -> Any:
        """A context object (a dataclass of batch-first tensors) for `velocity`."""

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """Video in [-1, 1] (B, 3, T, H, W) -> latent (B, C, T', H', W')."""

    def decode_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """Latent -> video in [-1, 1] (B, 3, T, H, W), on the CPU."""

    def velocity(self, latent: torch.Tensor, t_tokens: torch.Tensor, context: Any) -> torch.Tensor:
        """Flow velocity (noise − data) at per-token noise levels t_tokens (B, T', H'/p, W'/p)."""

    defaults: Any  # SamplingDefaults: steps, guidance, size, fps, seconds a user of this model expects

    def time_shift(self, tokens: int) -> float:
        """Schedule shift for a sequence of this many tokens."""

    # Optional: `schedule(steps, tokens) -> (steps + 1,)` decreasing noise levels from 1 to 0.
    # A backend with its own schedule (an open model's scheduler config: shift, dynamic shift,
    # DDIM's timesteps as flow t) defines it, and the sampler uses it instead of `time_shift`.

    # Optional: `condition_channels = True` with `prepare_condition(canvas, known, batch)`, for
    # image-to-video checkpoints that take the given frames as extra input channels (Wan / CogVideoX
    # I2V). The sampler then builds the canvas's condition and a blank one once per run, passes the
    # latent as it is (one t per sample) and calls `velocity(latent, t_tokens, context, condition=[...])`
    # with one condition per guidance branch.
