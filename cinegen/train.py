"""Training: the causal VAE, then the denoiser on cached latents; one process or torchrun.

`train(cfg)` (its body, `run`) reads top to bottom: set up (distributed, model, optimizer,
data) → resume → loop (batch → loss → step → EMA → log / sample / checkpoint) → export. Each step takes
`cfg.accumulate` micro-batches, micro-batch k of rank r drawn as "virtual rank"
r * accumulate + k, so one process accumulating N draws what N processes draw. Under torchrun
(`WORLD_SIZE` > 1; gloo on CPU, nccl on GPU) `cfg.parallel` picks DDP (a whole model per rank,
gradients all-reduced after a step's last micro-batch) or FSDP2 (`fully_shard` per repeated
block, then the root; the EMA is sharded alike); each rank draws its own batches, and rank 0
writes checkpoints.

The checkpoint is `{model, ema, optimizer, step, config, rng}`, whole (unsharded) state dicts
under FSDP too, written atomically, so a killed run resumes exactly where its last checkpoint
was.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import gc
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

from cinegen.canvas import Canvas, keep_frames, random_training_mask
from cinegen.config import MODEL_PRESETS, ModelConfig, TrainConfig
from cinegen.data import (
    LatentCache,
    StepBatches,
    batch_rng,
    encoder_fingerprint,
    make_buckets,
    make_source,
    prefetch,
    read_captions,
    video_batch,
)
from cinegen.errors import UserError
from cinegen.flow import add_noise, expand_token_t, flow_loss, sample_logit_normal
from cinegen.models.autoencoder import CausalVAE, ResBlock
from cinegen.models.transformer import SpacetimeDiT
from cinegen.sampling import Guidance, sample
from cinegen.text import TextEmbedding, TextEncoder

CHECKPOINT = "checkpoint.pt"
STAGES = ("autoencoder", "denoiser")


# ----------------------------------------------------------------------------- helpers


@dataclasses.dataclass
class Runtime:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Runtime:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Runtime(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    return Runtime(rank, world, device)


def end_distributed() -> None:
    """Destroy the process group and free it now, while Python is fully alive.

    `destroy_process_group` leaves the group to whatever still holds it: under FSDP its DeviceMesh,
    which DTensor's caches (sharding propagation, redistribute plans, mesh topology) keep until the
    interpreter exits. On gloo the group's worker threads then live into interpreter shutdown, and
    one that drops the last reference to a tensor with a Python object must take the GIL: Python
    ends that thread (pthread_exit), whose forced unwind through C++ aborts the process, "terminate
    called without an active exception" (SIGABRT, exit -6) after a finished run (seen in about one
    launch in 100 on a loaded 2-core machine). Freed here, the group's destructor joins its threads while
    they can still take the GIL."""
    dist.destroy_process_group()
    gc.collect()  # the run's FSDP modules and their hooks hold each other, and the group
    for obj in gc.get_objects():
        if isinstance(obj, DeviceMesh):  # its registry is a mesh's only reference to the group's object
            getattr(obj, "_pg_registry", {}).clear()


def save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # atomic: a kill never leaves a half-written checkpoint


# ----------------------------------------------------------------------------- FSDP
# Sharded (FSDP2), a model's weights, gradients and optimizer state are split across ranks as
# DTensors. Checkpoints keep whole, unsharded state dicts, as DDP and one process write them,
# so a run resumes under the other `parallel` or world size (with processes × accumulate kept,
# on the same clips). Gathering them is a collective:
# every rank calls these functions, rank 0 alone gets the result.

WHOLE = StateDictOptions(full_state_dict=True, cpu_offload=True)


def shard(model: nn.Module) -> None:
    """FSDP2 over the repeated blocks (each all-gathered just before it runs), then the root,
    which holds the rest (embeddings, the VAE's first and last convs)."""
    blocks = model.blocks if isinstance(model, SpacetimeDiT) else [
        m for m in [*model.encoder, *model.decoder] if isinstance(m, ResBlock)]
    for block in blocks:
        fully_shard(block)
    fully_shard(model)


def whole_model(module: nn.Module, sharded: bool, model_cfg: ModelConfig, stage: str, device: torch.device
                ) -> nn.Module | None:
    """`module` with whole weights for what rank 0 does with them (sample, measure, save, export):
    `module` itself unless `sharded`; sharded, an unsharded copy on rank 0 and None elsewhere."""
    if not sharded:
        return module
    state = get_model_state_dict(module, options=WHOLE)
    if dist.get_rank() != 0:
        return None
    with torch.random.fork_rng(devices=[]):  # its throwaway init must not move the run's RNG
        plain = CausalVAE(model_cfg.autoencoder) if stage == "autoencoder" else SpacetimeDiT(model_cfg.denoiser)
    plain.load_state_dict(state)
    return plain.to(device).eval().requires_grad_(False)


def model_state_dict(model: nn.Module, sharded: bool) -> dict:
    return get_model_state_dict(model, options=WHOLE) if sharded else model.state_dict()


def optimizer_state_dict(optimizer: torch.optim.Optimizer, model: nn.Module, sharded: bool) -> dict:
    """Today's format, parameters numbered in `model.parameters()` order; sharded, the whole state
    (DCP names parameters by their path in the model instead; renumbered here)."""
    if not sharded:
        return optimizer.state_dict()
    state = get_optimizer_state_dict(model, optimizer, options=WHOLE)
    index = {name: i for i, (name, _) in enumerate(model.named_parameters())}
    return {"state": {index[name]: value for name, value in state.get("state", {}).items()},
            "param_groups": [group | {"params": [index[name] for name in group["params"]]}
                             for group in state.get("param_groups", [])]}


def load_optimizer_state(optimizer: torch.optim.Optimizer, model: nn.Module, state: dict, sharded: bool) -> None:
    """The inverse of `optimizer_state_dict`; sharded, every rank gives the whole state and keeps its shard."""
    if not sharded:
        optimizer.load_state_dict(state)
        return
    names = [name for name, _ in model.named_parameters()]
    by_name = {"state": {names[i]: value for i, value in state["state"].items()},
               "param_groups": [group | {"params": [names[i] for i in group["params"]]}
                                for group in state["param_groups"]]}
    set_optimizer_state_dict(model, optimizer, by_name, options=StateDictOptions(full_state_dict=True))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    # One fused call over all tensors: on a GPU a small model's step is launch-bound.
    torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in model.parameters()], 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers(), strict=True):
        e.copy_(b)


def autocast(precision: str, device: torch.device):
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device.type, dtype=dtype)


def load_autoencoder(source: str, config=None, option: str = "autoencoder_from") -> CausalVAE:
    """The frozen VAE for the denoiser stage: an autoencoder-stage checkpoint or a model directory.
    A checkpoint is built as `config`, or without one as the preset it trained; `option` names
    where `source` came from in errors."""
    path = Path(source)
    if path.is_dir() and (path / "model.safetensors").is_file():
        from cinegen.backends.native import NativeBackend

        vae = NativeBackend.load(path, torch.device("cpu"), text_encoder=False).vae
    else:
        if path.is_dir():
            path = path / CHECKPOINT
        if not path.is_file():
            raise UserError(f"{option} {source!r} is neither a checkpoint nor a model directory")
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state["config"]["stage"] != "autoencoder":
            raise UserError(f"{str(path)!r} is a {state['config']['stage']} checkpoint, not an autoencoder one")
        trained = MODEL_PRESETS[state["config"]["model"]].autoencoder
        vae = CausalVAE(trained if config is None or _vae_shape(config) != _vae_shape(trained) else config)
        try:
            vae.load_state_dict(state["ema"])
        except RuntimeError as error:
            raise UserError(f"{option} {source!r} does not fit this model's VAE: "
                            f"{str(error).splitlines()[-1].strip()}") from None
    # Checked before the latent cache is built: its latents would not fit the denoiser.
    if config is not None and _vae_shape(vae.config) != _vae_shape(config):
        raise UserError(f"{option} {source!r} is a VAE of {_vae_shape(vae.config)}; this model needs one of "
                        f"{_vae_shape(config)}")
    return vae


def _vae_shape(config) -> str:
    """What a denoiser sees of a VAE: its latent channels and how much it shrinks space and time."""
    return (f"{config.latent_channels} latent channels, {config.spatial_factor}x smaller in space and "
            f"{config.time_factor}x in time")


@torch.no_grad()
def measure_latent_stats(vae: CausalVAE, source, buckets, time_factor: int, seed: int, batches: int = 8) -> None:
    """Set the VAE's per-channel latent mean/std so the denoiser sees unit-variance latents."""
    zs, device = [], vae.latent_mean.device
    for i in range(batches):
        batch = video_batch(source, buckets, time_factor, 8, batch_rng(seed, 99, i))
        zs.append(vae.encode_distribution(batch.video.to(device)).mean.transpose(0, 1).flatten(1))
    z = torch.cat(zs, dim=1)
    vae.latent_mean.copy_(z.mean(1))
    vae.latent_std.copy_(z.std(1).clamp_min(1e-3))


def encode_captions(encoder: TextEncoder, captions: list[str], batch: int = 256) -> TextEmbedding:
    parts = [encoder.encode(captions[i : i + batch]) for i in range(0, len(captions), batch)]
    return TextEmbedding(torch.cat([p.tokens for p in parts]).half(), torch.cat([p.mask for p in parts]),
                         torch.cat([p.pooled for p in parts]))


def log(out_dir: Path, record: dict) -> None:
    line = json.dumps(record)
    print(line, flush=True)
    with open(out_dir / "log.jsonl", "a") as f:
        f.write(line + "\n")


# ----------------------------------------------------------------------------- losses


def autoencoder_loss(vae: nn.Module, video: torch.Tensor, kl_weight: float, generator: torch.Generator,
                     objects: torch.Tensor | None = None, object_weight: float = 0.0,
                     temporal_weight: float = 0.0, edge_weight: float = 0.0, latent_noise: float = 0.0,
                     object_margin: int = 1, redraw: Callable[[torch.Tensor], torch.Tensor] | None = None
                     ) -> tuple[torch.Tensor, dict]:
    """L1 + MSE (+ a tiny KL). With `object_weight`, pixels that hold an object or change from
    the previous frame (where a moving thing arrives and where it left), grown by `object_margin`
    pixels, count `1 + object_weight` times: a small VAE otherwise keeps a moving object frozen at
    its first position, since those pixels are a sliver of the loss. With `temporal_weight`, an L1
    loss on the change between consecutive frames, so a still background decodes still. With
    `edge_weight`, the same between neighbouring pixels (along height and width): an L1 loss
    on the image gradient, which a blurred edge or corner misses, unlike the per-pixel losses
    where a blur is a cheap average. `latent_noise`: see TrainConfig.latent_noise. `redraw`: see
    CausalVAE.forward."""
    recon, dist_ = vae(video, generator, latent_noise, redraw)
    loss, stats = reconstruction_loss(recon, video, objects, object_weight, temporal_weight, edge_weight,
                                      object_margin)
    return loss + kl_weight * dist_.kl(), stats


def reconstruction_loss(recon: torch.Tensor, video: torch.Tensor, objects: torch.Tensor | None = None,
                        object_weight: float = 0.0, temporal_weight: float = 0.0, edge_weight: float = 0.0,
                        object_margin: int = 1) -> tuple[torch.Tensor, dict]:
    """`autoencoder_loss` of a decoded video, without the posterior's KL term."""
    error = recon - video
    weight = torch.ones_like(video[:, :1])
    if object_weight > 0:
        salient = torch.zeros_like(weight)
        salient[:, :, 1:] = (video[:, :, 1:] - video[:, :, :-1]).abs().amax(1, keepdim=True) > 0.1
        if objects is not None:
            salient = torch.maximum(salient, objects)
        m = object_margin
        grown = F.max_pool3d(salient, kernel_size=(1, 2 * m + 1, 2 * m + 1), stride=1, padding=(0, m, m))
        weight = weight + object_weight * grown
    weight = weight / weight.mean()
    l1 = (weight * error.abs()).mean()
    mse = error.pow(2).mean()
    loss = l1 + (weight * error.pow(2)).mean()
    if temporal_weight > 0 and video.shape[2] > 1:
        loss = loss + temporal_weight * error.diff(dim=2).abs().mean()
    if edge_weight > 0:
        loss = loss + edge_weight * (error.diff(dim=3).abs().mean() + error.diff(dim=4).abs().mean())
    psnr = 10 * math.log10(4.0 / max(mse.item(), 1e-10))  # range [-1, 1] has peak-to-peak 2
    return loss, {"l1": error.abs().mean().item(), "psnr": psnr}


def random_canvas_masks(batch: int, grid: tuple[int, int, int], share: float, generator: torch.Generator
                        ) -> torch.Tensor:
    """(batch, *grid) condition masks: a random training mask (DESIGN.md's canvas tasks) in about
    `share` of the clips, nothing known in the rest. Built on the CPU, one clip at a time."""
    masks = torch.zeros(batch, *grid)
    for i in range(batch):
        if torch.rand(1, generator=generator).item() < share:
            masks[i] = random_training_mask(grid, generator)
    return masks


def denoiser_loss(dit: nn.Module, x0: torch.Tensor, text: TextEmbedding, fps: torch.Tensor, cfg: TrainConfig,
                  generator: torch.Generator, objects: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Rectified-flow loss on a random canvas: known tokens carry t = 0 (or, with
    `cfg.context_noise`, a small t in half the clips) and get no loss; latent cells holding an
    object (when known) count `1 + cfg.object_weight` times."""
    b, _, t_len, h, w = x0.shape
    p = dit.module.config.patch_size if isinstance(dit, DistributedDataParallel) else dit.config.patch_size
    grid = (t_len, h // p, w // p)
    t = sample_logit_normal(b, generator).to(x0.device)
    t_tokens = t[:, None, None, None].expand(b, *grid).clone()
    # A tenth of clips get an independent noise level per latent frame (diffusion forcing,
    # arXiv 2407.01392), which teaches the model mixed-noise sequences for long videos.
    per_frame = torch.rand(b, generator=generator) < 0.1
    if per_frame.any() and t_len > 1:
        frame_t = sample_logit_normal(int(per_frame.sum()) * t_len, generator).view(-1, t_len, 1, 1)
        t_tokens[per_frame] = frame_t.expand(-1, t_len, *grid[1:]).to(x0.device)
    masks = random_canvas_masks(b, grid, cfg.canvas_share, generator).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator).to(x0.device)
    known_t = torch.zeros_like(t_tokens)
    if cfg.context_noise > 0:  # drawn last, so masks and noise stay those of a run without it
        level = torch.rand(b, generator=generator) * cfg.context_noise * (torch.rand(b, generator=generator) < 0.5)
        known_t = level[:, None, None, None].expand_as(t_tokens).to(x0.device)
    t_tokens = torch.where(masks.bool(), known_t, t_tokens)
    x_t = add_noise(x0, noise, expand_token_t(t_tokens, p))
    v = dit(x_t, t_tokens, text.tokens.float(), text.mask, text.pooled.float(), fps)
    weight = 1.0 - expand_token_t(masks, p)
    if objects is not None and cfg.object_weight > 0:
        weight = weight * (1.0 + cfg.object_weight * objects)
    return flow_loss(v, x0, noise, weight), {}


class Redrawer:
    """The frozen denoiser of a model directory, redrawing an autoencoder batch's latents as an
    edit of strength s would: noised to s, then denoised with the clips' captions at the model's
    sampling settings (steps scaled by s, its guidance). See TrainConfig.denoised_share."""

    def __init__(self, model_dir: str, captions: list[str], strengths: tuple[float, ...], device: torch.device,
                 context_share: float = 0.0, context_frames: int = 0, context_ends: tuple[str, ...] = ()):
        from cinegen.backends.native import NativeBackend

        self.backend = NativeBackend.load(model_dir, device, text_encoder=False)
        self.backend.vae = None  # the run trains its own copy; this one would only hold memory
        self.settings = self.backend.config.sampling
        encoder = TextEncoder(self.backend.config.text_encoder.name, self.backend.config.text_encoder.max_tokens,
                              device)
        self.captions = encode_captions(encoder, captions).to("cpu")
        self.null_text = encoder.encode([""]).to("cpu")
        self.strengths = strengths
        self.context_share, self.context_frames, self.context_ends = context_share, context_frames, context_ends

    def given_frames(self, frames: int, generator: torch.Generator) -> list[int]:
        """The latent frames that stay as encoded (TrainConfig.denoised_context_share), at least one
        left to redraw: none, or 1..context_frames at the head, the tail or both ends."""
        # One uniform draw decides all three (whether, which ends, how many), so the generator's
        # stream is the same whatever the settings; with one kind of end, n = 1 + ⌊u / share · most⌋.
        u = torch.rand(1, generator=generator).item()
        if u >= self.context_share:
            return []
        kind = u / self.context_share * len(self.context_ends)
        ends = self.context_ends[int(kind)]
        most = min(self.context_frames, (frames - 1) // (2 if ends == "both" else 1))
        if most < 1:
            return []
        n = 1 + int((kind - int(kind)) * most)
        return (list(range(n)) if ends != "tail" else []) + (list(range(frames - n, frames)) if ends != "head" else [])

    @torch.no_grad()
    def __call__(self, latent: torch.Tensor, caption_ids: torch.Tensor, fps: float,
                 generator: torch.Generator) -> torch.Tensor:
        low, high = self.strengths
        strength = low + (high - low) * torch.rand(1, generator=generator).item()
        b, device = latent.shape[0], latent.device
        cond = self.backend.make_context(self.captions[caption_ids].to(device, torch.float32), fps)
        uncond = self.backend.make_context(self.null_text.repeat(b).to(device), fps)
        noise = torch.randn(latent.shape, generator=generator).to(latent)
        shape = tuple(latent.shape[2:])
        given = self.given_frames(shape[0], generator)
        canvas = keep_frames(shape, latent, given, self.backend.patch) if given else Canvas(shape, self.backend.patch)
        canvas = dataclasses.replace(canvas, init=latent, strength=strength)
        return sample(self.backend, canvas, noise, cond, uncond, steps=max(2, math.ceil(self.settings.steps * strength)),
                      guidance=Guidance(text=self.settings.guidance),
                      shift=self.backend.time_shift(math.prod(canvas.token_grid))).to(latent)


def micro_batch_loss(net: nn.Module, batch, loss_seed: int, cfg: TrainConfig, rt: Runtime,
                     captions: TextEmbedding | None, null_text: TextEmbedding | None,
                     redrawer: Redrawer | None = None) -> tuple[torch.Tensor, dict]:
    """The loss of one micro-batch, its randomness (posterior samples, noise, text dropout, the
    redrawer's share, noise and strength) all drawn from `loss_seed`."""
    generator = torch.Generator().manual_seed(loss_seed)
    objects = batch.objects.to(rt.device) if batch.objects is not None else None
    with autocast(cfg.precision, rt.device):
        if cfg.stage == "autoencoder":
            redraw = None
            if redrawer is not None and torch.rand(1, generator=generator).item() < cfg.denoised_share:
                redraw = functools.partial(redrawer, caption_ids=batch.caption_ids, fps=batch.fps,
                                           generator=generator)
            return autoencoder_loss(net, batch.video.to(rt.device), cfg.kl_weight, generator, objects,
                                    cfg.object_weight, cfg.temporal_weight, cfg.edge_weight, cfg.latent_noise,
                                    cfg.object_margin, redraw)
        text = captions[batch.caption_ids]
        drop = torch.rand(len(batch.caption_ids), generator=generator) < cfg.text_dropout
        text = TextEmbedding(torch.where(drop[:, None, None], null_text.tokens.half(), text.tokens),
                             torch.where(drop[:, None], null_text.mask, text.mask),
                             torch.where(drop[:, None], null_text.pooled, text.pooled)).to(rt.device)
        return denoiser_loss(net, batch.latent.to(rt.device), text, batch.fps.to(rt.device), cfg, generator,
                             objects)


def gradient_sync(net: nn.Module, sync: bool):
    """A context in which backward reduces gradients across ranks only if `sync`: the
    micro-batches before a step's last only add to the local gradients."""
    if isinstance(net, FSDPModule):
        net.set_requires_gradient_sync(sync)
    elif isinstance(net, DistributedDataParallel) and not sync:
        return net.no_sync()
    return contextlib.nullcontext()


# ----------------------------------------------------------------------------- periodic samples


@torch.no_grad()
def sample_and_evaluate(model_cfg: ModelConfig, vae: CausalVAE, dit: SpacetimeDiT,
                        heldout_text: tuple[list[str], TextEmbedding | None], folder: Path) -> dict:
    """Generate held-out captions with the EMA model, save them, and score them with `cinegen eval`."""
    from cinegen.backends.native import NativeBackend
    from cinegen.canvas import text_to_video
    from cinegen.evaluate import evaluate_clip
    from cinegen.media import write_video
    from cinegen.pipeline import to_uint8

    captions, embedding = heldout_text
    if not captions:
        return {}
    backend = NativeBackend(model_cfg, vae, dit, None, torch.device("cpu"))
    d = model_cfg.sampling
    shape = (backend.latent_channels, 5, d.height // 8, d.width // 8)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, caption in enumerate(captions):
        cond = backend.make_context(embedding[i : i + 1], d.fps)
        uncond = backend.make_context(embedding[-1:], d.fps)
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(i))[None]
        latent = sample(backend, text_to_video(shape[1:], backend.patch), noise, cond, uncond, steps=d.steps,
                        guidance=Guidance(text=d.guidance), shift=backend.time_shift(shape[1] * (shape[2] // 2) * (shape[3] // 2)))
        frames = to_uint8(backend.decode_latent(latent))[0]
        write_video(folder / f"{i:02d}.mp4", frames, d.fps, {"prompt": caption})
        rows.append(evaluate_clip(frames, d.fps, caption))
    keys = ("adherence", "color_right", "shape_right", "motion_right", "background_right")
    return {k: round(float(np.mean([r[k] for r in rows if r.get(k) is not None] or [0.0])), 3) for k in keys}


# ----------------------------------------------------------------------------- the loop


def train(cfg: TrainConfig, max_steps: int | None = None, minutes: float | None = None) -> Path:
    """Train (or resume) the stage `cfg.stage`; returns the output directory.

    `max_steps` and `minutes` (of wall time, the latent cache's build included) end the run
    early, with a checkpoint (and export) as at the end."""
    deadline = time.time() + 60 * minutes if minutes else None
    check_settings(cfg, max_steps)
    rt = setup_distributed()
    # Held here, so that this reference is the group's last (see `end_distributed`): DDP's reducer,
    # freed with the model, would otherwise destroy it, joining its threads while holding the GIL
    # that one of them may be waiting for.
    group = dist.group.WORLD if rt.world_size > 1 else None
    out_dir = run(cfg, rt, max_steps, minutes, deadline)
    if group is not None:
        end_distributed()  # after `run` returned: what it held (DDP or FSDP model, optimizer) holds no group
        del group  # the last reference: the group's destructor joins its threads, the GIL released
    return out_dir


def run(cfg: TrainConfig, rt: Runtime, max_steps: int | None, minutes: float | None, deadline: float | None
        ) -> Path:
    """`train` on the processes `rt` describes: set up, resume, loop, export."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out_dir = Path(cfg.out_dir)
    ckpt_path = out_dir / CHECKPOINT
    # On the CPU: load_state_dict copies onto the device, and the RNG state must stay a CPU tensor.
    state = torch.load(ckpt_path, map_location="cpu", weights_only=False) if ckpt_path.is_file() else None
    if state is not None and (state["config"]["stage"], state["config"]["model"]) != (cfg.stage, cfg.model):
        # Checked before any work: the denoiser stage would first build its latent cache in that folder.
        raise UserError(f"{str(ckpt_path)!r} holds the {state['config']['stage']} of model {state['config']['model']!r}, "
                        f"and this run trains the {cfg.stage} of {cfg.model!r}; give it another out_dir (--out-dir)")
    model_cfg = run_model_config(cfg)
    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    tf = model_cfg.autoencoder.time_factor

    # -- data and model -----------------------------------------------------------------
    # Before the run folder is made: a bad manifest or video is refused with nothing written.
    source = make_source(cfg.data, cfg.seed)
    buckets = make_buckets(cfg.data, tf)
    out_dir.mkdir(parents=True, exist_ok=True)
    redrawer = None
    if cfg.stage == "autoencoder":
        model: nn.Module = CausalVAE(model_cfg.autoencoder)
        captions = null_text = None
        if cfg.denoised_share > 0:
            redrawer = Redrawer(cfg.init_from, list(source.captions), cfg.denoised_strength, rt.device,
                                cfg.denoised_context_share, cfg.denoised_context_frames, cfg.denoised_context_ends)
    else:
        vae = load_autoencoder(cfg.autoencoder_from, model_cfg.autoencoder).eval().requires_grad_(False)
        model = SpacetimeDiT(model_cfg.denoiser)
        cache_path = out_dir / "latents.pt"
        # Short clips and images get up to 4x the clips of a full-length batch.
        tokens_per_batch, max_batch = cfg.batch_size * 180, cfg.batch_size * 4
        cache = None
        if cache_path.is_file():
            cache = LatentCache.load(cache_path, tokens_per_batch, model_cfg.denoiser.patch_size, max_batch)
            fingerprint = encoder_fingerprint(vae)
            # A cache saved before caches kept their VAE's fingerprint (None) cannot be checked; it is
            # used as before, since runs part way through train on such caches, and the shipped
            # model's recipe (docs/default_model.md) copies one into a new run folder.
            if cache.fingerprint not in (None, fingerprint):
                if state is not None:  # the denoiser has learned these latents: another VAE's would not fit it
                    raise UserError(
                        f"{str(cache_path)!r} holds latents of another VAE than autoencoder_from "
                        f"{cfg.autoencoder_from!r} (encoder {cache.fingerprint}, now {fingerprint}), and "
                        f"{str(ckpt_path)!r} has trained on them; give the VAE this run started with "
                        f"({state['config']['autoencoder_from']!r}), or delete latents.pt to go on with this one's")
                # Nothing has trained on it yet: encode the clips again with this VAE.
                if rt.main:
                    log(out_dir, {"event": "cache_rebuilt", "reason": "another VAE", "was": cache.fingerprint,
                                  "now": fingerprint})
                cache = None
        if cache is None:
            # Every rank builds the same cache from the same seed; only rank 0 keeps a copy.
            clips = cfg.cache_clips or len(source) * 2
            # The build counts against `minutes` as the steps do: a run told to take M minutes must
            # not spend longer encoding clips. Ended by the deadline, the run trains on the clips
            # encoded so far (its few steps, checkpoint and export as at any deadline) and keeps
            # them as its cache, so resuming sees the data it saw; fewer clips than a batch is
            # nothing to train on, and is refused. Rank 0's clock decides for every rank, so all
            # ranks stop at the same chunk and hold the same cache.
            build_started = time.time()

            def budget_spent() -> bool:
                return share_of_time_left(deadline, build_started, rt) == 0

            cache = LatentCache.build(source, vae.to(rt.device), buckets, clips, cfg.seed, tokens_per_batch,
                                      model_cfg.denoiser.patch_size, workers=cfg.workers, max_batch=max_batch,
                                      stop=budget_spent if deadline else None)
            vae.cpu()
            if cache.clips < clips:
                if cache.clips < cfg.batch_size:
                    raise UserError(f"--minutes {minutes:g} ran out while the latent cache was built, with "
                                    f"{cache.clips} of its {clips} clips encoded, fewer than a batch of "
                                    f"{cfg.batch_size}; give more minutes or fewer cache_clips")
                if rt.main:
                    log(out_dir, {"event": "cache_cut", "clips": cache.clips, "planned": clips})
            if rt.main:
                cache.save(cache_path)
        encoder = TextEncoder(model_cfg.text_encoder.name, model_cfg.text_encoder.max_tokens, rt.device)
        captions = encode_captions(encoder, list(source.captions)).to("cpu")  # batches index it on the CPU
        null_text = encoder.encode([""]).to("cpu")
        heldout_text = ([], None)
        if cfg.sample_every and Path(cfg.data.heldout).is_file():
            heldout = read_captions(cfg.data.heldout)[:8]
            heldout_text = (heldout, encoder.encode(heldout + [""]).to("cpu"))
        del encoder

    step = 0
    if cfg.init_from and state is None:
        widened = load_init(model, init_weights(cfg.init_from, cfg.stage))
        if widened and rt.main:
            log(out_dir, {"event": "init_widened", "from": cfg.init_from, "latent_channels": widened})
    model.to(rt.device).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    if state is not None:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        step = state["step"]
        torch.set_rng_state(state["rng"])
        if rt.main:
            log(out_dir, {"event": "resumed", "step": step})
    if cfg.stage == "autoencoder" and cfg.freeze_encoder:
        # A denoiser's latents come from the EMA encoder: fine-tune the decoder against exactly
        # that encoder, so better reconstructions never shift the latent space under the denoiser.
        model.encoder.load_state_dict(ema.encoder.state_dict())
        model.encoder.requires_grad_(False)
    if cfg.stage == "autoencoder" and cfg.train_only:
        model.requires_grad_(False)
        for part in cfg.train_only:
            getattr(model, part).requires_grad_(True)
    params = sum(p.numel() for p in model.parameters())
    sharded = rt.world_size > 1 and cfg.parallel == "fsdp"
    if sharded:
        # The EMA is sharded as the model is, so its update stays one elementwise lerp per shard.
        shard(model)
        shard(ema)
        net = model
    else:
        net = DistributedDataParallel(model) if rt.world_size > 1 else model
    # After sharding: the optimizer holds the parameters FSDP put in place of the model's own.
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    if state is not None:
        load_optimizer_state(optimizer, model, state["optimizer"], sharded)
        del state  # the model and optimizer hold their own copies
    whole = functools.partial(whole_model, sharded=sharded, model_cfg=model_cfg, stage=cfg.stage, device=rt.device)
    if rt.main:
        log(out_dir, {"event": "start", "stage": cfg.stage, "params": params, "step": step,
                      "world_size": rt.world_size, "parallel": cfg.parallel if rt.world_size > 1 else None,
                      "buckets": len(buckets), "captions": len(source)})

    end = cfg.steps if max_steps is None else min(cfg.steps, step + max_steps)
    if cfg.stage == "autoencoder":
        make_batch = functools.partial(video_batch, source, buckets, tf, cfg.batch_size, objects=cfg.object_weight > 0)
    else:
        make_batch = cache.batch
    batches = prefetch(StepBatches(make_batch, cfg.seed, rt.rank, step, end, cfg.accumulate), cfg.workers)
    started = loop_started = time.time()
    first_step, time_left = step, 1.0
    # Gathering a sharded EMA whole is a collective over all its weights: a step that samples,
    # checkpoints and exports reuses one gather (every rank counts alike, so all call it together).
    ema_whole, gathered_at = None, None
    while step < end:
        lr = learning_rate(cfg, step, min(time_left, (end - step) / max(1, end - first_step)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        micro_batches = next(batches)
        losses, micro_stats = [], []
        for k, (loss_seed, batch) in enumerate(micro_batches):
            last = k == len(micro_batches) - 1
            with gradient_sync(net, last):  # one all-reduce per step, after the last micro-batch
                loss, stats = micro_batch_loss(net, batch, loss_seed, cfg, rt, captions, null_text, redrawer)
                # Summed over micro-batches and averaged over ranks: the mean over every clip of the step.
                (loss / len(micro_batches)).backward()
            losses.append(loss.detach())  # read (.item(), a device sync) only when logged
            micro_stats.append(stats)
        loss = torch.stack(losses).mean()
        stats = {key: sum(s[key] for s in micro_stats) / len(micro_stats) for key in micro_stats[0]}
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if isinstance(grad_norm, DTensor):
            grad_norm = grad_norm.full_tensor()  # on every rank: it may be a collective
        optimizer.step()
        update_ema(ema, model, cfg.ema if step >= cfg.warmup else 0.0)
        step += 1
        if deadline and step % 10 == 0:
            time_left = share_of_time_left(deadline, loop_started, rt)
            if time_left == 0:
                end = step  # the checkpoint and export below run as at a planned end

        if rt.main and (step % cfg.log_every == 0 or step == end):
            elapsed = time.time() - started
            log(out_dir, {"step": step, "loss": round(loss.item(), 5), "grad_norm": round(grad_norm.item(), 3),
                          "lr": float(f"{lr:.4g}"), "sec_per_step": round(elapsed / max(1, step % cfg.log_every or cfg.log_every), 3)}
                | {k: round(v, 3) for k, v in stats.items()})
            started = time.time()
        if cfg.stage == "denoiser" and cfg.sample_every and step % cfg.sample_every == 0:
            ema_whole, gathered_at = whole(ema), step
            if rt.main:
                log(out_dir, {"step": step, "samples": sample_and_evaluate(model_cfg, vae, ema_whole, heldout_text,
                                                                           out_dir / "samples" / f"{step:06d}")})
        if step % cfg.checkpoint_every == 0 or step == end:
            if gathered_at != step:
                ema_whole, gathered_at = whole(ema), step
            model_state = model_state_dict(model, sharded)
            optimizer_state = optimizer_state_dict(optimizer, model, sharded)
            # Cheap; every checkpoint usable. A frozen encoder keeps the statistics its denoiser knows.
            if cfg.stage == "autoencoder" and not (cfg.freeze_encoder or cfg.train_only) and ema_whole is not None:
                measure_latent_stats(ema_whole, source, buckets, tf, cfg.seed)
            if rt.main:
                save_checkpoint(ckpt_path, {"model": model_state, "ema": ema_whole.state_dict(),
                                            "optimizer": optimizer_state, "step": step,
                                            "config": dataclasses.asdict(cfg), "rng": torch.get_rng_state()})
    if cfg.stage == "denoiser":
        from cinegen.backends.native import NativeBackend

        if gathered_at != step:  # the final checkpoint gathered it, but for a finished run started again
            ema_whole = whole(ema)
        if rt.main:
            NativeBackend.save(out_dir / "model", model_cfg, vae, ema_whole)
            log(out_dir, {"event": "exported", "model_dir": str(out_dir / "model"), "step": step})
    return out_dir


PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PARALLEL = ("ddp", "fsdp")
# What `train_only` may name: the VAE's parts after its decoder, and the setting that adds each.
TRAINABLE_PARTS = {"gate": "gate_width"}


def check_settings(cfg: TrainConfig, max_steps: int | None = None) -> None:
    """Settings no run can use, as one-line errors before any work: `log_every = 0` failed on
    `step % 0` after the first step, `batch_size = 0` and `precision = "fp8"` with a traceback,
    and `steps = 0` (or `--steps -3`) ran nothing without a word."""
    if cfg.stage not in STAGES:
        raise UserError(f"stage {cfg.stage!r} is not one of {', '.join(STAGES)}")
    if cfg.model not in MODEL_PRESETS:
        raise UserError(f"model preset {cfg.model!r} is not one of {', '.join(MODEL_PRESETS)}")
    if cfg.stage == "denoiser" and not cfg.autoencoder_from:
        raise UserError("stage 'denoiser' needs autoencoder_from (an autoencoder checkpoint or model dir)")
    if cfg.precision not in PRECISIONS:
        raise UserError(f"precision {cfg.precision!r} is not one of {', '.join(PRECISIONS)}")
    if cfg.parallel not in PARALLEL:
        raise UserError(f"parallel {cfg.parallel!r} is not one of {', '.join(PARALLEL)}")
    counts = {"steps": cfg.steps, "batch_size": cfg.batch_size, "accumulate": cfg.accumulate,
              "checkpoint_every": cfg.checkpoint_every,
              "log_every": cfg.log_every, "max_steps": 1 if max_steps is None else max_steps}
    for name, value in counts.items():
        if value < 1:
            raise UserError(f"{name} {value} must be at least 1")
    for name in ("warmup", "sample_every", "threads", "workers", "cache_clips", "weight_decay", "kl_weight",
                 "object_weight", "object_margin", "temporal_weight", "edge_weight", "latent_noise"):
        if getattr(cfg, name) < 0:
            raise UserError(f"{name} {getattr(cfg, name)} must be 0 or more")
    if not cfg.lr >= 0:
        raise UserError(f"lr {cfg.lr} must be 0 or more")
    for part in cfg.train_only:
        if not isinstance(part, str) or part not in TRAINABLE_PARTS:
            raise UserError(f"train_only part {part!r} is not one of {', '.join(TRAINABLE_PARTS)}")
        width = getattr(MODEL_PRESETS[cfg.model].autoencoder, TRAINABLE_PARTS[part])
        if cfg.stage != "autoencoder" or not width:
            raise UserError(f"train_only {part!r} needs stage 'autoencoder' and a model with a {part} "
                            f"({TRAINABLE_PARTS[part]} > 0); {cfg.model!r} in stage {cfg.stage!r} has none")
    if "gate" in cfg.train_only and min(cfg.data.latent_frames) < 2:
        raise UserError(f"train_only 'gate' trains on clips, not images: latent_frames must all be >= 2, "
                        f"got {list(cfg.data.latent_frames)}")
    if not cfg.grad_clip > 0:
        raise UserError(f"grad_clip {cfg.grad_clip} must be above 0")
    for name in ("cooldown", "ema", "text_dropout", "condition_dropout", "canvas_share"):
        if not 0 <= getattr(cfg, name) <= 1:
            raise UserError(f"{name} {getattr(cfg, name)} is not a share between 0 and 1")
    for name in ("denoised_share", "denoised_context_share"):
        if not 0 <= getattr(cfg, name) <= 1:
            raise UserError(f"{name} {getattr(cfg, name)} is not a share between 0 and 1")
    if cfg.denoised_context_share > 0:
        if cfg.denoised_context_frames < 1:
            raise UserError(f"denoised_context_frames {cfg.denoised_context_frames} must be at least 1 latent frame")
        ends = list(cfg.denoised_context_ends)
        if not ends or not set(ends) <= {"head", "tail", "both"}:
            raise UserError(f"denoised_context_ends {ends} must be a non-empty list of 'head', 'tail' and 'both'")
    if cfg.denoised_share > 0:
        if cfg.stage != "autoencoder" or not cfg.freeze_encoder:
            raise UserError("denoised_share needs stage 'autoencoder' with freeze_encoder = true: the denoiser "
                            "redraws the latents of the encoder it was trained on")
        if not Path(cfg.init_from, "model.safetensors").is_file():
            raise UserError(f"denoised_share needs init_from a model directory whose denoiser redraws the latents; "
                            f"init_from {cfg.init_from!r} is not one")
        strengths = cfg.denoised_strength
        if len(strengths) != 2 or not 0 < strengths[0] <= strengths[1] <= 1:
            raise UserError(f"denoised_strength {list(strengths)} must be two noise levels [low, high] with "
                            f"0 < low <= high <= 1")
    if not 0 <= cfg.context_noise < 1:
        raise UserError(f"context_noise {cfg.context_noise} is not a noise level in [0, 1)")
    data, preset = cfg.data, MODEL_PRESETS[cfg.model]
    # Frames fold into whole latent cells, and (denoiser) latents into whole patches.
    factor = preset.autoencoder.spatial_factor * (preset.denoiser.patch_size if cfg.stage == "denoiser" else 1)
    if not data.sizes:
        raise UserError("data sizes is empty; give [width, height] pairs such as [[96, 96], [128, 64]]")
    for size in data.sizes:
        if not isinstance(size, tuple) or len(size) != 2 or min(size) < 1 or any(side % factor for side in size):
            raise UserError(f"data size {list(size) if isinstance(size, tuple) else size} is not [width, height] "
                            f"in multiples of {factor} px")
    if not data.latent_frames or min(data.latent_frames) < 1:
        raise UserError(f"data latent_frames {list(data.latent_frames)} must be counts of at least 1")
    if not data.fps or min(data.fps) <= 0:
        raise UserError(f"data fps {list(data.fps)} must be frame rates above 0")
    if data.source == "world" and data.caption_pool < 1:
        raise UserError(f"data caption_pool {data.caption_pool} must be at least 1")


def learning_rate(cfg: TrainConfig, step: int, run_left: float) -> float:
    """Linear warmup over `cfg.warmup` steps, constant, then a linear fall to 0 over the last
    `cfg.cooldown` share of the run; `run_left` is the share of the run still to go."""
    lr = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup))
    if cfg.cooldown > 0:
        lr *= min(1.0, max(0.0, run_left) / cfg.cooldown)
    return lr


def share_of_time_left(deadline: float, started: float, rt: Runtime) -> float:
    """The share of the training loop's wall-clock budget still to go (0 once the deadline has
    passed); under torchrun every rank gets rank 0's answer, so all ranks step with one learning rate."""
    left = max(0.0, (deadline - time.time()) / max(1e-9, deadline - started))
    if rt.world_size == 1:
        return left
    shared = torch.tensor([left], device=rt.device, dtype=torch.float64)
    dist.broadcast(shared, 0)
    return float(shared.item())


def run_model_config(cfg: TrainConfig) -> ModelConfig:
    """The model a run trains and exports: its preset, with the sampling defaults (size, steps,
    guidance) of the model directory it starts from, if any, so that a fine-tune of the shipped
    model renders as that model does and not at the preset's size."""
    from cinegen.backends.native import read_config

    model_cfg = copy.deepcopy(MODEL_PRESETS[cfg.model])
    if cfg.init_from:
        model_cfg.sampling = read_config(cfg.init_from).sampling
    return model_cfg


def init_weights(model_dir: str, stage: str) -> dict:
    """A fresh run's starting weights from a model directory: its VAE or its denoiser."""
    from cinegen.backends.native import NativeBackend

    backend = NativeBackend.load(model_dir, torch.device("cpu"), text_encoder=False)
    return (backend.vae if stage == "autoencoder" else backend.dit).state_dict()


def load_init(model: CausalVAE | SpacetimeDiT, state: dict[str, torch.Tensor]) -> list[int] | None:
    """Load a fresh run's starting weights. From a model with fewer latent channels the model
    widens itself (`load_narrower`) and this returns [old, new]; any other mismatch is an error."""
    own = model.state_dict()
    new = model.config.latent_channels
    if "latent_mean" in state:  # a VAE
        old = state["latent_mean"].numel()
    else:  # a denoiser: patch_size² values per channel in each token
        old = state["patch_embed.weight"].shape[1] // model.config.patch_size**2
    if set(own) == set(state) and old < new:
        model.load_narrower(state)
        return [old, new]
    # A VAE given a temporal gate starts from one without: the gate keeps its fresh, nearly closed
    # init, which leaves the decoder's frames nearly as they were.
    fresh = {name: own[name] for name in own if name.startswith("gate.") and name not in state}
    try:
        model.load_state_dict(state | fresh)
    except RuntimeError as error:
        lines = str(error).splitlines()
        detail = lines[1].strip() if len(lines) > 1 else lines[0]
        raise UserError(f"init_from weights do not fit this model: {detail}") from None
    return None


def export(run_dir: str | Path, target: str | Path, autoencoder: str | None = None) -> None:
    """Write a model directory (config.json + model.safetensors) from a denoiser run's EMA, or
    from a model directory (its denoiser, VAE and sampling defaults).

    `autoencoder` overrides the VAE, e.g. with a decoder fine-tuned on the same encoder.
    """
    from cinegen.backends.loading import model_kind
    from cinegen.backends.native import NativeBackend

    run_dir = Path(run_dir)
    if model_kind(run_dir) == "native":
        model = NativeBackend.load(run_dir, torch.device("cpu"), text_encoder=False)
        model_cfg, dit, vae = model.config, model.dit, model.vae
    else:
        if not (run_dir / CHECKPOINT).is_file():
            raise UserError(f"{str(run_dir)!r} is neither a run folder with {CHECKPOINT} nor a model directory")
        state = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=False)
        cfg = TrainConfig.from_dict(state["config"])
        if cfg.stage != "denoiser":
            raise UserError(f"{str(run_dir)!r} is an {cfg.stage} run; export a denoiser run (its model holds the "
                            "VAE it trained on), and give an autoencoder run as --autoencoder")
        model_cfg = run_model_config(cfg)
        dit = SpacetimeDiT(model_cfg.denoiser)
        dit.load_state_dict(state["ema"])
        vae = load_autoencoder(cfg.autoencoder_from, model_cfg.autoencoder)
    if autoencoder:
        decoder_vae = load_autoencoder(autoencoder, option="--autoencoder")
        for (name, a), b in zip(vae.encoder.state_dict().items(), decoder_vae.encoder.state_dict().values(),
                                strict=True):
            if not torch.equal(a, b):
                raise UserError(f"{autoencoder!r} has another encoder than the denoiser's VAE ({name} differs)")
        # The denoiser learned latents normalised by its VAE's statistics; keep exactly those.
        decoder_vae.latent_mean.copy_(vae.latent_mean)
        decoder_vae.latent_std.copy_(vae.latent_std)
        vae = decoder_vae
        model_cfg = dataclasses.replace(model_cfg, autoencoder=vae.config)  # e.g. with its temporal gate
    try:
        NativeBackend.save(target, model_cfg, vae, dit)
    except OSError as e:
        raise UserError(f"cannot write the model directory {str(target)!r}: {e.strerror or e}") from None

