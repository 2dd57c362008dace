"""One sampler for every task: Euler / Heun over a canvas, with text and condition guidance.

Stateless (the schedule is passed in, no hidden step index). The denoiser is anything with
`velocity(latent, t_tokens, context) -> v` (`cinegen.backends.Backend`); contexts are
dataclasses of batch-first tensors, concatenated to run all guidance branches in one call.

The latent `x` evolves on every cell; branches that use the condition see the known cells
replaced by the known latent noised to `t_floor`, with per-token timesteps that say so.
The branch without condition sees `x` as it is, at the current t everywhere.

Image-to-video checkpoints that take the given frames as extra input channels (a backend with
`condition_channels`, e.g. Wan / CogVideoX I2V) see `x` as it is in every branch; the known part
goes in through `backend.prepare_condition(canvas, known, batch)`, passed to `velocity` as
`condition` (one per branch; the branch without condition gets the blank one).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from cinegen.canvas import Canvas
from cinegen.flow import add_noise, timesteps

SAMPLERS = ("euler", "heun")
ProgressFn = Callable[[int, int], None]


class Denoiser(Protocol):
    def velocity(self, latent: torch.Tensor, t_tokens: torch.Tensor, context: Any) -> torch.Tensor: ...


def concat_contexts(contexts: list[Any]) -> Any:
    """Concatenate dataclass contexts along the batch dimension (non-tensor fields from the first)."""
    first = contexts[0]
    values = {}
    for f in dataclasses.fields(first):
        items = [getattr(c, f.name) for c in contexts]
        values[f.name] = torch.cat(items, dim=0) if isinstance(items[0], torch.Tensor) else items[0]
    return type(first)(**values)


@dataclasses.dataclass
class FlowEdit:
    """Inversion-free editing: the source prompt's context and a seed for the per-step noise (the
    first batch item's; item i draws from seed + i)."""

    source_cond: Any
    seed: int = 0


@dataclasses.dataclass
class Guidance:
    text: float = 1.0  # classifier-free guidance on the prompt
    condition: float = 1.0  # guidance on the known part of the canvas (image, clip ends)
    # Guide only while t >= min_t (a guidance interval, Kynkäänniemi et al., arXiv 2404.07724):
    # the last steps only refine detail, where guidance adds flicker and costs a second pass.
    min_t: float = 0.0


def guided_velocity(
    model: Denoiser,
    canvas: Canvas,
    x: torch.Tensor,
    t: float,
    known_noisy: torch.Tensor | None,
    cond: Any,
    uncond: Any,
    guidance: Guidance,
    channels: tuple[Any, Any] | None = None,
) -> torch.Tensor:
    """Velocity at `x` (B, C, T, H, W) and time t, combining up to three branches:
    v = v(∅, ∅) + g_c·(v(∅, c) − v(∅, ∅)) + g_t·(v(text, c) − v(∅, c))  (InstructPix2Pix, arXiv 2211.09800).
    `channels`: (the canvas's condition, the blank one) for a backend with `condition_channels`."""
    if t < guidance.min_t:
        guidance = Guidance()  # the conditional velocity alone: one branch
    b = x.shape[0]
    token_mask = canvas.token_mask().to(x.device)
    has_condition = canvas.mask is not None
    t_free = torch.full((b, *canvas.token_grid), float(t), device=x.device)
    if has_condition and channels is None:
        x_cond = torch.where(canvas.cell_mask().to(x.device).bool(), known_noisy, x)
        t_cond = torch.where(token_mask.bool(), canvas.t_floor, t_free)
    else:
        x_cond, t_cond = x, t_free
    given, blank = channels if channels is not None else (None, None)

    branches: list[tuple[torch.Tensor, torch.Tensor, Any, Any]] = []
    use_condition_guidance = has_condition and guidance.condition != 1.0
    if use_condition_guidance:
        branches.append((x, t_free, uncond, blank))
    if guidance.text != 1.0 or use_condition_guidance:
        branches.append((x_cond, t_cond, uncond, given))
    branches.append((x_cond, t_cond, cond, given))

    extra = {} if channels is None else {"condition": [br[3] for br in branches]}
    v_all = model.velocity(
        torch.cat([br[0] for br in branches]),
        torch.cat([br[1] for br in branches]),
        concat_contexts([br[2] for br in branches]),
        **extra,
    ).chunk(len(branches))
    if len(branches) == 1:
        return v_all[0]
    if len(branches) == 2:
        return v_all[0] + guidance.text * (v_all[1] - v_all[0])
    v_none, v_c, v_full = v_all
    return v_none + guidance.condition * (v_c - v_none) + guidance.text * (v_full - v_c)


def _roll(x: torch.Tensor | None, shift: int, dim: int) -> torch.Tensor | None:
    return None if x is None else torch.roll(x, shift, dims=dim)


@torch.no_grad()
def sample(
    model: Denoiser,
    canvas: Canvas,
    noise: torch.Tensor,  # (B, C, T, H, W)
    cond: Any,
    uncond: Any,
    *,
    steps: int,
    guidance: Guidance = Guidance(),
    sampler: str = "euler",
    shift: float = 1.0,
    progress: ProgressFn | None = None,
    show_progress: bool = False,
    flow_edit: FlowEdit | None = None,
) -> torch.Tensor:
    """Fill in the canvas; returns the clean latent (B, C, T, H, W).

    With `flow_edit`, `canvas.init` is the source latent and the trajectory starts at the source
    itself (no inversion), moving by the difference of the target and source velocities.
    """
    assert sampler in SAMPLERS, f"sampler {sampler!r} not in {SAMPLERS}"
    start = canvas.strength if canvas.init is not None else 1.0
    family_schedule = getattr(model, "schedule", None)
    if family_schedule is not None:  # an open model's own noise levels (Backend.schedule), scaled for edits
        schedule = (family_schedule(steps, math.prod(canvas.token_grid)) * start).tolist()
    else:
        schedule = timesteps(steps, shift, start=start).tolist()
    init = canvas.init.to(noise) if canvas.init is not None else None
    x = noise if init is None else add_noise(init, noise, schedule[0])
    known = canvas.known.to(noise) if canvas.known is not None else None
    known_noisy = add_noise(known, noise, canvas.t_floor) if known is not None else None
    cell_mask = canvas.cell_mask().to(noise.device).bool()
    channels = None
    if getattr(model, "condition_channels", False):  # once per run: the given frames as input channels
        blank = model.prepare_condition(Canvas(canvas.shape, canvas.patch), None, noise.shape[0])
        given = blank if known is None else model.prepare_condition(canvas, known_noisy, noise.shape[0])
        channels = (given, blank)
    if flow_edit is not None:
        assert init is not None, "FlowEdit needs the source latent as canvas.init"
        x = init.expand_as(noise).clone()

    def guided(x_at: torch.Tensor, t: float, step: int) -> torch.Tensor:
        if flow_edit is None:
            return guided_velocity(model, canvas, x_at, t, known_noisy, cond, uncond, guidance, channels)
        # FlowEdit (Kulikov et al., arXiv 2412.08629): noise the source afresh each step, move the
        # edit by v(target | z_src + edit − source) − v(source prompt | z_src). Same noise within a step.
        # Item i of a batch has seed + i, and draws its noise as a run of that seed alone would.
        eps = torch.stack(
            [
                torch.randn(noise.shape[1:], generator=torch.Generator().manual_seed(flow_edit.seed + i + step))
                for i in range(noise.shape[0])
            ]
        ).to(noise)
        z_src = add_noise(init, eps, t)
        v_tar = guided_velocity(
            model, canvas, x_at + z_src - init, t, known_noisy, cond, uncond, guidance, channels
        )
        return v_tar - guided_velocity(
            model, canvas, z_src, t, known_noisy, flow_edit.source_cond, uncond, guidance, channels
        )

    def velocity(x_at: torch.Tensor, t: float, step: int) -> torch.Tensor:
        if not canvas.wrap:
            return guided(x_at, t, step)
        # Seamless loop: roll the time axis by a different amount each step so the seam between
        # the last and first frame is an interior position for most of the trajectory. (Loops know
        # no frames, so a channel-conditioned model's condition is the blank one and is not rolled.)
        k = step % canvas.shape[0]
        rolled = dataclasses.replace(canvas, known=_roll(canvas.known, k, 1), mask=_roll(canvas.mask, k, 0))
        v = guided_velocity(
            model,
            rolled,
            torch.roll(x_at, k, dims=2),
            t,
            _roll(known_noisy, k, 2),
            cond,
            uncond,
            guidance,
            channels,
        )
        return torch.roll(v, -k, dims=2)

    def anchored(x0: torch.Tensor) -> torch.Tensor:
        """The clean estimate with its low frequencies replaced by the anchor's. (One correction:
        downsampling after upsampling blurs, so it undershoots on the finest scale of the draft,
        but iterating it over-sharpened real drafts: 23.8 dB against them, not 25.1.)"""
        low = F.interpolate(x0, size=anchor.shape[-3:], mode="area")
        return x0 + F.interpolate(anchor - low, size=x0.shape[-3:], mode="trilinear", align_corners=False)

    anchor = canvas.anchor.to(noise) if canvas.anchor is not None else None
    bar = tqdm(total=steps, desc="denoising", unit="step", disable=not show_progress, leave=False)
    for i in range(steps):
        t, t_next = schedule[i], schedule[i + 1]
        v = velocity(x, t, i)
        if sampler == "heun" and t_next > 0:
            # Heun (2nd order): average the slope here and at the Euler prediction.
            v = 0.5 * (v + velocity(x + (t_next - t) * v, t_next, i))
        if anchor is not None and t >= canvas.anchor_until:
            # The Euler step is x_next = (1 − t')·x0 + t'·ε with x0 = x − t·v and ε = x + (1 − t)·v;
            # the anchor moves x0 only.
            x = (1 - t_next) * anchored(x - t * v) + t_next * (x + (1 - t) * v)
        else:
            x = x + (t_next - t) * v
        bar.update(1)
        if progress is not None:
            progress(i + 1, steps)
    bar.close()
    if known is not None:
        # Known cells come back as given. Under a t_floor > 0 the model only ever saw them noised
        # (known_noisy); the x it integrated there started from pure noise and means nothing.
        x = torch.where(cell_mask, known, x)
    return x
