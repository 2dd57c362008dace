"""What every open-weight (diffusers-format) backend shares.

The model classes and weights come from `diffusers` (transformer, VAE, scheduler config) and
`transformers` (text encoder, tokenizer); this module maps them onto cinegen's Backend
interface: prompts → a batch-first context, video ↔ normalised latent, and the flow velocity
`v = ε − x0` at per-token t. Families whose denoiser takes one t per sample get the canvas
through RePaint-style replacement (Lugmayr et al., arXiv 2201.09865): known latents are
re-noised to the current t and written in before every call, here in `velocity`, so the one
sampler in `cinegen.sampling` runs every family unchanged.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from cinegen.config import SamplingDefaults


@dataclass
class Options:
    """Memory and speed options users of these models expect (the CLI's --offload, --vae-tiling, ...)."""

    offload: bool = False  # keep components on the CPU, move each to the device only while it runs
    vae_tiling: bool = False
    vae_slicing: bool = False
    compile: bool = False  # torch.compile the denoiser
    step_cache: int = 0  # drafts: reuse the denoiser output for this many steps after each real call


@dataclass
class TextContext:
    embeds: torch.Tensor  # (B, S, D)
    mask: torch.Tensor  # (B, S) 1 = real token
    fps: torch.Tensor  # (B,)


class LazyTextContext(TextContext):
    """A TextContext that runs the text encoder only when a field is first read.

    The pipeline encodes the negative prompt for every job; at guidance 1 the sampler never
    reads it, so its encoder pass is skipped. Built from keywords (as `concat_contexts` does)
    it is an ordinary context."""

    def __init__(self, compute=None, **values):
        if compute is None:
            super().__init__(**values)
        else:
            object.__setattr__(self, "_compute", compute)

    def __getattr__(self, name: str):  # only reached while the fields are not yet set
        compute = self.__dict__.get("_compute")
        if compute is None or name not in ("embeds", "mask", "fps"):
            raise AttributeError(name)
        ctx = compute()
        self.embeds, self.mask, self.fps = ctx.embeds, ctx.mask, ctx.fps
        del self.__dict__["_compute"]
        return getattr(self, name)


@dataclass
class ChannelCondition:
    """What an image-to-video checkpoint takes besides the noisy latent, for a batch of B samples."""

    channels: torch.Tensor  # (B, Cc, T, H, W) concatenated to the noisy latent's channels
    image_embeds: torch.Tensor | None = None  # (B·n, S, D) image-encoder tokens (Wan 2.1 I2V's CLIP)


def join_conditions(conditions: list[ChannelCondition]) -> ChannelCondition:
    """One condition per guidance branch -> one for the batched denoiser call."""
    embeds = [c.image_embeds for c in conditions]
    return ChannelCondition(
        torch.cat([c.channels for c in conditions]),
        None if embeds[0] is None else torch.cat(embeds),
    )


@dataclass
class Timings:
    """Seconds spent per part since the last `reset`, for the benchmark's breakdown."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def part(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def reset(self) -> None:
        self.seconds.clear()


def flow_sigmas(
    scheduler_config: dict, steps: int, mu: float | None = None, linear: bool = False
) -> torch.Tensor:
    """The `steps + 1` noise levels (1 → 0) that diffusers' FlowMatchEulerDiscreteScheduler would use.

    Built by the scheduler itself from the model's own config (shift, dynamic shifting), so the
    schedule is exactly the family's; a UniPC config contributes its `flow_shift`.
    `linear` passes `sigmas = linspace(1, 1/steps, steps)` as LTX-Video's pipeline does."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    config = dict(scheduler_config)
    if config.get("_class_name") != "FlowMatchEulerDiscreteScheduler":
        config = {
            "shift": config.get("flow_shift") or config.get("shift") or 1.0,
            "num_train_timesteps": config.get("num_train_timesteps", 1000),
        }
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(config)
    kwargs = {}
    if linear:
        kwargs["sigmas"] = np.linspace(1.0, 1.0 / steps, steps)
    if scheduler.config.use_dynamic_shifting:
        kwargs["mu"] = mu
    if "sigmas" in kwargs:
        scheduler.set_timesteps(device="cpu", **kwargs)
    else:
        scheduler.set_timesteps(steps, device="cpu", **kwargs)
    return scheduler.sigmas.float().cpu()


def renoise_known(
    latent: torch.Tensor, t_tokens: torch.Tensor, patch: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """RePaint for denoisers with one t per sample: returns (latent, t (B,)).

    The sampler writes the known cells as the known latent at `t_floor` (their token t is below
    the sample's t); a model without per-token t cannot be told so, so those cells are re-noised
    to the sample's t with a fixed noise (the same every step: the known cells then follow the
    straight flow path from their value to that noise, as generated cells do)."""
    b = latent.shape[0]
    t = t_tokens.flatten(1).amax(dim=1)  # (B,) the generated tokens' t
    t_cells = t_tokens.repeat_interleave(patch, dim=-2).repeat_interleave(patch, dim=-1)[:, None]
    lower = t_cells < t.view(b, 1, 1, 1, 1)
    if not bool(lower.any()):
        return latent, t
    generator = torch.Generator().manual_seed(20240207)
    noise = torch.randn(latent.shape[1:], generator=generator).to(latent)
    tt = t.view(b, 1, 1, 1, 1).to(latent)
    # Known cells hold (1 − t_floor)·x0 + t_floor·ε; moving them to t keeps their x0 part.
    scale = (1.0 - tt) / (1.0 - t_cells.to(latent)).clamp_min(1e-6)
    renoised = scale * latent + tt * noise
    return torch.where(lower, renoised, latent), t


class DiffusersBackend:
    """Shared parts; a family subclass sets the geometry and implements `_encode_prompts`,
    `_denoise`, `_encode`/`_decode` (model latents) and `_schedule`."""

    family = "diffusers"
    per_token_t = False  # whether the denoiser takes one t per token
    # Image-to-video checkpoints whose denoiser takes the given frames as extra input channels:
    # the sampler then calls `prepare_condition` once per run and passes `condition` to `velocity`.
    condition_channels = False
    max_sequence_length = 226

    def __init__(
        self,
        components: dict,
        name: str,
        device: torch.device,
        dtype: torch.dtype,
        options: Options | None = None,
        defaults: SamplingDefaults | None = None,
        cast: bool = True,
    ):
        self.name = name
        self.components = components
        self.transformer = components["transformer"]
        self.vae = components["vae"]
        self.text_encoder = components.get("text_encoder")
        self.tokenizer = components.get("tokenizer")
        self.image_encoder = components.get("image_encoder")  # image-to-video checkpoints; kept fp32
        self.image_processor = components.get("image_processor")
        self.scheduler_config = dict(components["scheduler"].config) if components.get("scheduler") else {}
        self.device, self.dtype = torch.device(device), dtype
        self.options = options or Options()
        self.defaults = defaults or SamplingDefaults()
        self.timings = Timings()
        self._text_cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._step_cache: tuple[tuple, float, torch.Tensor] | None = None
        self._step_calls = 0
        self._schedules: dict[tuple[int, int], torch.Tensor] = {}
        self._resident: torch.nn.Module | None = None
        self.vae_dtype = self._vae_dtype()
        for module in self._modules():
            module.requires_grad_(False).eval()
        if cast:  # components built in memory; `from_pretrained(torch_dtype=...)` already cast (cast=False)
            self.vae.to(dtype=self.vae_dtype)
            for module in (self.transformer, self.text_encoder):
                if module is not None:
                    module.to(dtype=dtype)
        if not self.options.offload:
            for module in self._modules():
                module.to(self.device)
        if self.options.vae_tiling:
            self.vae.enable_tiling()
        if self.options.vae_slicing:
            self.vae.enable_slicing()
        if self.options.compile:
            self.transformer = torch.compile(self.transformer)

    def _vae_dtype(self) -> torch.dtype:
        return self.dtype

    def _modules(self) -> list[torch.nn.Module]:
        modules = (self.transformer, self.vae, self.text_encoder, self.image_encoder)
        return [m for m in modules if m is not None]

    @property
    def size_multiple(self) -> int:
        return self.spatial_factor * self.patch

    @property
    def config(self):  # what `cinegen models` and the pipeline show
        return self.defaults

    # -- offload: one component on the device at a time (diffusers' enable_model_cpu_offload) ----------

    def _on_device(self, module: torch.nn.Module) -> torch.nn.Module:
        if self.options.offload and self._resident is not module:
            if self._resident is not None:
                self._resident.to("cpu")
            module.to(self.device)
            self._resident = module
        return module

    # -- text -------------------------------------------------------------------------------------------

    def encode_text(self, prompts: list[str], fps: float) -> TextContext:
        """Each distinct prompt is encoded once (a batch of variations shares one embedding) and the
        last few are kept, so a negative prompt or a repeated job costs nothing. The encoder runs
        when the sampler first reads the context (never for a branch guidance 1 skips)."""
        return LazyTextContext(lambda: self._encode_text_now(list(prompts), fps))

    def _encode_text_now(self, prompts: list[str], fps: float) -> TextContext:
        with self.timings.part("text_encoder"):
            missing = list(dict.fromkeys(p for p in prompts if p not in self._text_cache))
            if missing:
                self._on_device(self.text_encoder)
                with torch.no_grad():
                    embeds, mask = self._encode_prompts(missing)
                for i, p in enumerate(missing):
                    self._text_cache[p] = (embeds[i].to(self.dtype), mask[i])
            for p in prompts:
                self._text_cache.move_to_end(p)
            rows = [self._text_cache[p] for p in prompts]
            while len(self._text_cache) > 32:
                self._text_cache.popitem(last=False)
            embeds = torch.stack([r[0] for r in rows]).to(self.device)
            mask = torch.stack([r[1] for r in rows]).to(self.device)
        return TextContext(embeds, mask, torch.full((len(prompts),), float(fps), device=self.device))

    def _tokenize(self, prompts: list[str], attention_mask: bool = True):
        return self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.max_sequence_length,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=attention_mask,
            return_tensors="pt",
        )

    # -- video ↔ latent ---------------------------------------------------------------------------------

    @torch.no_grad()
    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        with self.timings.part("vae_encode"):
            self._on_device(self.vae)
            return self._encode(video.to(self.device, self.vae_dtype)).float()

    @torch.no_grad()
    def decode_latent(self, latent: torch.Tensor) -> torch.Tensor:
        with self.timings.part("vae_decode"):
            self._on_device(self.vae)
            video = self._decode(latent.to(self.device, self.vae_dtype))
            return video.float().clamp(-1, 1).cpu()

    # -- the denoiser -----------------------------------------------------------------------------------

    @torch.no_grad()
    def velocity(
        self,
        latent: torch.Tensor,
        t_tokens: torch.Tensor,
        context: TextContext,
        condition: list[ChannelCondition] | None = None,
    ) -> torch.Tensor:
        """`condition`: one per guidance branch, for `condition_channels` checkpoints (the sampler
        then passes the latent as it is, one t per sample, and the known part in the condition)."""
        with self.timings.part("denoiser"):
            key, t_now = (tuple(latent.shape), tuple(context.embeds.shape)), float(t_tokens.max())
            cached = self._step_cache
            # Reuse only further down the same trajectory (t decreasing), never across runs.
            if self.options.step_cache and cached is not None and cached[0] == key and t_now < cached[1]:
                if self._step_calls % (self.options.step_cache + 1):
                    self._step_calls += 1
                    self._step_cache = (key, t_now, cached[2])
                    return cached[2]
            self._on_device(self.transformer)
            if condition is not None:
                v = self._denoise(latent, t_tokens, context, join_conditions(condition)).float()
            else:
                if not self.per_token_t:
                    latent, t = renoise_known(latent, t_tokens, self.patch)
                    t_tokens = t.view(-1, 1, 1, 1).expand_as(t_tokens)
                v = self._denoise(latent, t_tokens, context).float()
            if self.options.step_cache:
                self._step_cache, self._step_calls = (key, t_now, v), 1
            return v

    def schedule(self, steps: int, tokens: int) -> torch.Tensor:
        """The family's own `steps + 1` noise levels (1 → 0), made once per (steps, tokens): building
        a diffusers scheduler costs about as much as a small model's denoiser step."""
        key = (steps, tokens)
        if key not in self._schedules:
            self._schedules[key] = self._schedule(steps, tokens)
        return self._schedules[key].clone()

    def reset_step_cache(self) -> None:
        self._step_cache, self._step_calls = None, 0

    def time_shift(self, tokens: int) -> float:
        return 1.0  # unused: `schedule` gives the family's own noise levels
