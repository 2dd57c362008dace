"""Generator: text encoder + VAE + denoiser + sampler behind one call.

`Pipeline.run(request)` is what the CLI and the server both call. It reads top to bottom:
validate the request → encode text and inputs → build the canvas → sample → decode.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import cinegen
from cinegen import inputs as inputs_mod
from cinegen.backends import Backend
from cinegen.canvas import (
    Canvas,
    edit,
    finish_draft,
    keep_ends,
    keep_frames,
    loop,
    pixel_mask_to_tokens,
    region_edit,
    text_to_video,
)
from cinegen.config import ModelConfig
from cinegen.data import to_video
from cinegen.errors import UserError
from cinegen.inputs import Inputs, Shot, parse_storyboard
from cinegen.media import MediaInfo
from cinegen.sampling import SAMPLERS, FlowEdit, Guidance, sample

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "weights"
TASKS = ("generate", "edit", "extend", "connect", "loop")
# The input files each task needs, and all it takes (the server checks uploads with the same tables).
TASK_NEEDS_FILES = {"edit": ("video",), "extend": ("video",), "connect": ("video", "video_b")}
TASK_TAKES_FILES = {
    "generate": ("image", "last_image"),
    "edit": ("video", "mask"),
    "extend": ("video",),
    "connect": ("video", "video_b"),
    "loop": ("video",),
}
MIN_SIDE, MAX_SIDE = 16, 1920
MAX_SECONDS = 600.0
MAX_FPS = 60.0
# The longest clip (in latent frames) the default model trained on (configs/tiny.toml,
# data.latent_frames). Extension adds frames in windows of this length, each knowing
# CONTEXT_LATENTS latent frames of the recent past.
WINDOW_LATENTS = 5
# A clip of up to this many latent frames is one canvas; longer videos go in windows of this
# length, each knowing the recent past plus one anchor frame. A minute at 8 fps then takes 20
# windows instead of 60, so the errors of generated context compound fewer times: on 16 held-out
# captions adherence in the last 10 s was 0.38 against 0.06 with windows of 5, and 4 s clips
# scored 0.56 as one canvas against 0.44 in windows of 5 (benchmarks/results/stop14/README.md).
LONG_WINDOW_LATENTS = 9
CONTEXT_LATENTS = 2
CONNECT_CONTEXT_LATENTS = 1  # each side of a transition; a short context leaves room to generate
MAX_CANVAS_LATENTS = 16  # single-canvas tasks (edit, loop, connect) beyond the window, where RoPE still holds
MAX_SOURCE_FRAMES = 1 + 4 * 240  # about a minute at 16 fps; longer sources are cut with a note
TASK_SECONDS = {"extend": 2.0, "connect": 1.0}  # default --seconds: the added part for these tasks
EDIT_STRENGTH = 0.6
DRAFT_MIN_SIDE = 80  # the smallest short side the default model trained on (configs/tiny.toml)
FINALIZE_STRENGTH = 0.6  # draft → final re-noise level (DESIGN.md: t ≈ 0.5–0.7)
# Keep the draft's low frequencies while t >= this (canvas.finish_draft); 1: never. The anchor
# raised PSNR against the draft but broke what the final drew (docs/tasks.md, "Draft → final").
FINALIZE_ANCHOR_UNTIL = 1.0
DRAFT_STEP_DIVISOR = 4  # the draft runs this many times fewer steps than the final
# `loop --video`: the bridge back to the start as a share of the clip: long enough that objects can
# travel back to where they started without a jump inside the bridge.
LOOP_BRIDGE_SHARE = 0.5
# carry_detail: a pixel within this many uint8 levels of the known frame's decode still shows
# the same surface, so it takes that frame's VAE error correction in full (fading to none at 2x).
DETAIL_TOLERANCE = 16.0
# Decoded videos are quantized with hysteresis: a pixel keeps its 8-bit value until the decoder
# moves it by more than this many levels in some channel. The decoder redraws a still background
# with sub-level differences in every frame, and plain rounding turns them into 1-level toggles
# on about a fifth of the still pixels: a quarter of the measured flicker, and bits spent by
# H.264 on nothing. The cost is at most 1 level of error instead of 0.5.
HOLD_LEVELS = 1.0
DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}


class Cancelled(Exception):
    """Raised from a progress callback to stop a job between denoising steps."""


@dataclass
class GenerateRequest:
    prompt: str
    negative: str = ""
    width: int | None = None
    height: int | None = None
    aspect: str | None = None  # "16:9", "9:16", "1:1", ... with `size` = short side in pixels
    size: int | None = None
    seconds: float | None = None
    fps: float | None = None
    frames: int | None = None  # overrides seconds; 1 makes an image
    steps: int | None = None
    guidance: float | None = None
    image_guidance: float | None = None
    guidance_min_t: float | None = None
    sampler: str | None = None
    seed: int = 0
    batch: int = 1
    task: str = "generate"
    # Task inputs (file paths), used by the tasks of the canvas.
    image: str | None = None
    last_image: str | None = None
    video: str | None = None
    video_b: str | None = None
    mask: str | None = None
    strength: float | None = None
    source_prompt: str | None = None
    backward: bool = False
    draft: bool = False
    storyboard: list | None = None  # [{"prompt": ..., "seconds": ...}, ...]: shots with cuts
    # Noise level of the generated frames a long video's later windows continue (None = the model's).
    context_t_floor: float | None = None
    # Guidance on what a long video's later windows know: the anchor and the recent past (None = the model's).
    context_guidance: float | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GenerateRequest:
        """A request from a sidecar's "request" record (`generate --from`, `finalize`)."""
        if not isinstance(data, dict):
            raise UserError(f"a request record must be a JSON object of fields, not {type(data).__name__}")
        # Records written before the guidance interval (or the context guidance) existed guided
        # every step (and a long video's later windows not at all beyond the text).
        data = {"guidance_min_t": 0.0, "context_guidance": 1.0} | data
        if isinstance(data.get("storyboard"), list):
            # A storyboard's "frames" tells how long the video its shots made is (in records from before
            # that, the default clip's length); the shots make that length again.
            data = {name: value for name, value in data.items() if name != "frames"}
        fields = dataclasses.fields(cls)
        names = {f.name for f in fields}
        unknown = set(data) - names
        if unknown:
            raise UserError(f"unknown request fields {sorted(unknown)}; allowed: {sorted(names)}")
        required = [f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [name for name in required if name not in data]
        if missing:
            raise UserError(f"request record has no {', '.join(map(repr, missing))}")
        hints = typing.get_type_hints(cls)
        for name, value in data.items():
            kinds = typing.get_args(hints[name]) or (hints[name],)
            # JSON has one kind of number: a whole one stands for a float, but true/false for neither.
            numbers = (int,) if float in kinds else ()
            if not isinstance(value, (*kinds, *numbers)) or (isinstance(value, bool) and bool not in kinds):
                allowed = " or ".join("null" if kind is type(None) else kind.__name__ for kind in kinds)
                raise UserError(f"request field {name!r} is {value!r}; it must be {allowed}")
        return cls(**data)


@dataclass
class Geometry:
    """Resolved output size in pixels and frames, and the latent shape it maps to."""

    width: int
    height: int
    frames: int
    fps: float
    latent: tuple[int, int, int]  # (T, H, W)
    render: tuple[int, int] = (0, 0)  # (width, height) sampled: the next multiples of the size multiple


@dataclass
class Prepared:
    """A checked request: its geometry, decoded inputs and sampler settings."""

    geometry: Geometry
    inputs: Inputs
    steps: int
    guidance: Guidance
    sampler: str
    shots: list[Shot] | None = None
    context_t_floor: float = 0.0
    context_guidance: float = 1.0


@dataclass
class GenerationResult:
    videos: list[np.ndarray]  # each uint8 (T, H, W, 3)
    fps: float
    metadata: dict = field(default_factory=dict)
    latents: torch.Tensor | None = None  # (B, C, T, H, W), for drafts and chaining

    @property
    def frames(self) -> np.ndarray:
        return self.videos[0]


def video_frames(latents: int, time_factor: int) -> int:
    """The video frames `latents` latent frames decode to: the first alone, then time_factor each."""
    return 1 + (latents - 1) * time_factor


def frame_count(seconds: float, fps: float, time_factor: int) -> int:
    """The 1 + time_factor·k frames (at least 1 + time_factor) closest to `seconds` at `fps`: the
    lengths the causal VAE encodes whole."""
    return 1 + time_factor * max(1, round((seconds * fps - 1) / time_factor))


def shot_frames(shots: list[Shot], fps: float, time_factor: int) -> list[int]:
    """Each storyboard shot's frame count: its video is these one after another."""
    return [frame_count(shot.seconds, fps, time_factor) for shot in shots]


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device not in ("cpu", "cuda", "mps") and not device.startswith("cuda:"):
        raise UserError(f"device {device!r} is not one of auto, cpu, cuda, mps")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device!r} asked for, but no CUDA device is available")
    if device == "mps" and not torch.backends.mps.is_available():
        raise UserError("device 'mps' asked for, but MPS is not available")
    return torch.device(device)


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise UserError(f"dtype {dtype!r} is not one of auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def parse_aspect(aspect: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in aspect.split(":"))
        assert w > 0 and h > 0 and max(w, h) / min(w, h) <= 4
    except (ValueError, AssertionError):
        raise UserError(
            f"aspect {aspect!r} is not W:H with positive integers and ratio at most 4 "
            "(e.g. 16:9, 9:16, 1:1, 4:3)"
        ) from None
    return w, h


def to_video_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float (1, 3, T, H, W) in [-1, 1]."""
    return to_video(frames)[None]


def to_uint8(video: torch.Tensor, hold: float | None = None) -> list[np.ndarray]:
    """float (B, 3, T, H, W) in [-1, 1] -> list of uint8 (T, H, W, 3). Frame by frame a pixel keeps
    its previous value unless some channel moved by more than `hold` levels from it (default
    HOLD_LEVELS, so every decoded video, benchmarks' included, is rounded as users get it; 0 =
    plain rounding); the first frame is rounded."""
    hold = HOLD_LEVELS if hold is None else hold
    x = (video.float().clamp(-1, 1) + 1.0) * 127.5
    if hold > 0 and x.shape[2] > 1:
        held = x[:, :, 0].round()
        steady = [held]
        for frame in x[:, :, 1:].unbind(2):
            moved = (frame - held).abs().amax(dim=1, keepdim=True) > hold
            held = torch.where(moved, frame.round(), held)
            steady.append(held)
        x = torch.stack(steady, dim=2)
    x = x.round().to(torch.uint8)
    return [v.permute(1, 2, 3, 0).contiguous().numpy() for v in x]


class Pipeline:
    def __init__(self, backend: Backend, defaults, model_name: str):
        self.backend = backend
        self.defaults = defaults  # SamplingDefaults
        self.model_name = model_name

    @classmethod
    def load(
        cls,
        model: str | Path | None = None,
        device: str | None = "auto",
        dtype: str | None = None,
        offload: bool = False,
        vae_tiling: bool = False,
        vae_slicing: bool = False,
        compile: bool = False,
        step_cache: int = 0,
    ) -> Pipeline:
        """`model`: a cinegen model directory (default: the shipped one), a diffusers directory of a
        supported open model (Wan, LTX-Video, CogVideoX) or its hub id (`cinegen.backends.loading`)."""
        from cinegen.backends.diffusers_common import Options
        from cinegen.backends.loading import load_backend

        dev = resolve_device(device)
        options = Options(offload=offload, vae_tiling=vae_tiling, vae_slicing=vae_slicing, compile=compile,
                          step_cache=step_cache)
        backend = load_backend(model or DEFAULT_MODEL_DIR, dev, resolve_dtype(dtype, dev), options=options)
        return cls(backend, backend.defaults, backend.name)

    # -- request → geometry ---------------------------------------------------------------

    def _check_side(self, name: str, value: int) -> None:
        m = self.backend.size_multiple
        # Multiples of m/2 (1080 = 135·8) are rendered at the next multiple of m and center-cropped.
        if not MIN_SIDE <= value <= MAX_SIDE or value % (m // 2):
            raise UserError(
                f"{name} {value} must be a multiple of {m} (or of {m // 2}, such as 1080) "
                f"between {max(m, MIN_SIDE)} and {MAX_SIDE}"
            )

    def _size(self, req: GenerateRequest, source: tuple[int, int] | None) -> tuple[int, int]:
        d, m = self.defaults, self.backend.size_multiple
        if req.size is not None and not MIN_SIDE <= req.size <= MAX_SIDE:
            raise UserError(f"size {req.size} (the short side in pixels) is outside {MIN_SIDE}..{MAX_SIDE}")
        if (req.aspect is not None or req.size is not None) and (req.width is not None or req.height is not None):
            raise UserError("give either --width/--height or --aspect/--size, not both")
        if req.aspect is not None:
            aw, ah = parse_aspect(req.aspect)
        elif req.width is not None or req.height is not None or (source is None and req.size is None):
            return (
                req.width if req.width is not None else d.width,
                req.height if req.height is not None else d.height,
            )
        else:
            # Follow the given image or video's aspect (without one, the model's) at --size or the model's size.
            aw, ah = source or (d.width, d.height)
        short = req.size if req.size is not None else min(d.width, d.height)
        scale = short / min(aw, ah)
        width, height = max(m, round(aw * scale / m) * m), max(m, round(ah * scale / m) * m)
        if source is not None and req.aspect is None and max(width, height) > MAX_SIDE:
            # Said here: _check_side would name a side the user never gave.
            raise UserError(
                f"the input is {aw}x{ah}: its aspect at a short side of {short} px gives {width}x{height}, "
                f"over {MAX_SIDE} px; give the output's width and height, or an aspect"
            )
        return width, height

    def geometry(
        self, req: GenerateRequest, source: tuple[int, int] | None = None, source_fps: float | None = None
    ) -> Geometry:
        width, height = self._size(req, source)
        self._check_side("width", width)
        self._check_side("height", height)
        d = self.defaults
        fps = float(req.fps if req.fps is not None else source_fps if source_fps else d.fps)
        if source_fps and req.fps is None:
            fps = min(MAX_FPS, max(1.0, fps))
        if not 1.0 <= fps <= MAX_FPS:
            raise UserError(f"fps {fps:g} is outside 1..{MAX_FPS:g}")
        f = self.backend.time_factor
        if req.storyboard is not None:
            # A storyboard is its shots' frames one after another (each 1 + f·k, their sum not), so
            # its length is theirs, not the default clip's: the sidecar records what was written.
            frames = sum(shot_frames(parse_storyboard(req.storyboard), fps, f))
        elif req.frames is not None:
            if req.frames < 1 or (req.frames - 1) % f:
                raise UserError(f"frames {req.frames} must be 1 + {f}k (1, {1 + f}, {1 + 2 * f}, ...)")
            if req.frames > MAX_SECONDS * fps:
                raise UserError(f"frames {req.frames} at {fps:g} fps is over {MAX_SECONDS:g} s; at most "
                                f"{math.floor(MAX_SECONDS * fps)} frames")
            frames = req.frames
        else:
            seconds = float(req.seconds if req.seconds is not None else TASK_SECONDS.get(req.task, d.seconds))
            if not 0.0 < seconds <= MAX_SECONDS:
                raise UserError(f"seconds {seconds:g} is outside (0, {MAX_SECONDS:g}]")
            frames = frame_count(seconds, fps, f)
        s, m = self.backend.spatial_factor, self.backend.size_multiple
        render = (-(-width // m) * m, -(-height // m) * m)
        latent = (1 + (frames - 1) // f, render[1] // s, render[0] // s)
        return Geometry(width, height, frames, fps, latent, render)

    def _settings(self, req: GenerateRequest) -> tuple[int, Guidance, str]:
        d = self.defaults
        steps = req.steps if req.steps is not None else d.steps
        if not 1 <= steps <= 1000:
            raise UserError(f"steps {steps} is outside 1..1000")
        g = req.guidance if req.guidance is not None else d.guidance
        gi = req.image_guidance if req.image_guidance is not None else 1.0
        for name, value in (("guidance", g), ("image guidance", gi)):
            check_guidance(name, value)
        min_t = req.guidance_min_t if req.guidance_min_t is not None else d.guidance_min_t
        if not 0.0 <= min_t < 1.0:
            raise UserError(f"guidance min t {min_t} is outside [0, 1)")
        sampler = req.sampler or d.sampler
        if sampler not in SAMPLERS:
            raise UserError(f"sampler {sampler!r} is not one of {', '.join(SAMPLERS)}")
        return steps, Guidance(text=g, condition=gi, min_t=min_t), sampler

    def _context_guidance(self, req: GenerateRequest) -> float:
        value = req.context_guidance if req.context_guidance is not None else self.defaults.context_guidance
        check_guidance("context guidance", value)
        return value

    def _context_t_floor(self, req: GenerateRequest) -> float:
        t_floor = req.context_t_floor if req.context_t_floor is not None else self.defaults.context_t_floor
        if not 0.0 <= t_floor < 1.0:
            raise UserError(f"context t floor {t_floor} is outside [0, 1)")
        return t_floor

    def _check_task(self, req: GenerateRequest) -> None:
        if req.task not in TASKS:
            raise UserError(f"task {req.task!r} is not one of {', '.join(TASKS)}")
        for name in TASK_NEEDS_FILES.get(req.task, ()):
            if not getattr(req, name):
                raise UserError(f"task {req.task!r} needs a {name.replace('_', ' ')} file")
        allowed = TASK_TAKES_FILES[req.task]
        for name in ("image", "last_image", "video", "video_b", "mask"):
            if getattr(req, name) and name not in allowed:
                raise UserError(
                    f"task {req.task!r} does not take {name.replace('_', ' ')!r}; it takes "
                    f"{', '.join(sorted(allowed))}"
                )
        prompt_optional = req.storyboard is not None or (req.task == "loop" and req.video)
        if not prompt_optional and (not req.prompt or not req.prompt.strip()):
            raise UserError("prompt is empty; describe the video to generate")
        if req.source_prompt is not None and not req.source_prompt.strip():
            raise UserError("source prompt is empty; describe what the source video shows, or leave it out")
        if req.strength is not None and not 0.0 < req.strength <= 1.0:
            raise UserError(f"strength {req.strength} is outside (0, 1]")
        if req.storyboard is not None and (req.task != "generate" or req.image or req.last_image):
            raise UserError("a storyboard works with plain generate only (no --image/--last-image)")
        if req.storyboard is not None and (req.frames is not None or req.seconds is not None):
            # They would be ignored, as the CLI says when it refuses --frames / --seconds.
            raise UserError("a storyboard's shots give its length (each its seconds); leave out frames and seconds")

    def prepare(self, req: GenerateRequest) -> Prepared:
        """Check the request and read its inputs; every user error surfaces here, before slow work."""
        self._check_task(req)
        if not 1 <= req.batch <= 16:
            raise UserError(f"batch {req.batch} is outside 1..16")
        if not 0 <= req.seed < 2**63:
            raise UserError(f"seed {req.seed} is outside 0..2^63-1")
        steps, guidance, sampler = self._settings(req)
        shots = parse_storyboard(req.storyboard) if req.storyboard is not None else None
        if shots is not None and sum(s.seconds for s in shots) > MAX_SECONDS:
            raise UserError(
                f"storyboard is {sum(s.seconds for s in shots):g} s; at most {MAX_SECONDS:g} s allowed"
            )
        f = self.backend.time_factor
        inputs = inputs_mod.load(req, min_frames=1 + f, max_frames=MAX_SOURCE_FRAMES)
        geometry = self.geometry(req, inputs.source_size, inputs.video_fps)
        self._check_length(req, inputs, geometry)
        self._fit_inputs(req, inputs, geometry)
        if getattr(self.backend, "condition_channels", False) and req.task == "generate":
            if inputs.image is None and inputs.last_image is None:
                inputs.notes.append(
                    f"{self.model_name} is an image-to-video model: without --image it starts from an "
                    "empty condition (no frame given), which it was not made for; a text-to-video model "
                    "of its family does text->video better"
                )
        return Prepared(
            geometry, inputs, steps, guidance, sampler, shots, self._context_t_floor(req), self._context_guidance(req)
        )

    def validate(self, req: GenerateRequest) -> Geometry:
        return self.prepare(req).geometry

    def _check_length(self, req: GenerateRequest, inputs: Inputs, g: Geometry) -> None:
        """Lengths a task cannot make: refused here, not in the task, where the inputs are already
        encoded and the progress bar runs."""
        f, latents = self.backend.time_factor, g.latent[0]
        if req.task == "generate" and inputs.last_image is not None:
            if latents > LONG_WINDOW_LATENTS:  # the last image is a known frame of the one canvas
                raise UserError(f"--last-image works for clips up to {self._window_seconds(g):g} s at {g.fps:g} fps")
            shortest = 3 if inputs.image is not None else 2  # a generated latent frame between the images
            if latents < shortest:
                raise UserError(f"--last-image needs a clip of at least {self.frames_of(shortest)} frames")
        if req.task == "extend" and g.frames == 1:  # extend adds frames - 1
            raise UserError(f"--frames 1 adds nothing to the clip; give at least {1 + f} (or --seconds)")
        if req.task == "connect":
            # The transition is the clip's latent frames after the first; a canvas of A's last, the
            # transition and B's first latent frames must fit where RoPE holds.
            limit = MAX_CANVAS_LATENTS - 2 * CONNECT_CONTEXT_LATENTS - 1
            if latents - 1 > limit:
                raise UserError(
                    f"a transition of {g.frames - 1} frames is too long; at most {_clip_length(f * limit - 1, g.fps)}"
                )
            if latents - 1 < 1:
                raise UserError(
                    f"a transition of {g.frames} frame is too short; at least {_clip_length(self.frames_of(2), g.fps)}"
                )
        if req.task == "loop":
            if inputs.video is None and latents > MAX_CANVAS_LATENTS:
                raise UserError(
                    f"loops are at most {_clip_length(self.frames_of(MAX_CANVAS_LATENTS), g.fps)}"
                )
            # Circular time needs 2 latent frames; a clip's bridge back starts from its last 1 + k.
            shortest = 2 if inputs.video is None else 1 + CONNECT_CONTEXT_LATENTS
            if latents < shortest:
                raise UserError(
                    f"a loop of {g.frames} frame(s) is too short; at least {_clip_length(self.frames_of(shortest), g.fps)}"
                )

    def _fit_inputs(self, req: GenerateRequest, inputs: Inputs, g: Geometry) -> None:
        """Images must have the video's aspect; videos and masks are resized/cropped, with a note."""
        for role, path in (("image", req.image), ("last_image", req.last_image)):
            image = getattr(inputs, role)
            if image is not None:
                inputs_mod.check_image_aspect(role.replace("_", " "), path, image, g.width, g.height)
                setattr(inputs, role, inputs_mod.fit_frames(image[None], g.width, g.height)[0])
        for role in ("video", "video_b"):
            video = getattr(inputs, role)
            if video is None:
                continue
            note = inputs_mod.fit_note(role.replace("_", " "), video, g.width, g.height)
            if note:
                inputs.notes.append(note)
            if role == "video" and inputs.mask is not None:
                inputs.mask = inputs_mod.fit_frames(inputs.mask, g.width, g.height)
            setattr(inputs, role, inputs_mod.fit_frames(video, g.width, g.height))

    # -- the run ----------------------------------------------------------------------------

    def noise(self, geometry: Geometry, seed: int, batch: int) -> torch.Tensor:
        """Noise drawn on the CPU from the seed, so results do not depend on the device."""
        return self._noise(geometry.latent, [seed + i for i in range(batch)])

    def _noise(self, latent_shape: tuple[int, int, int], seeds: list[int]) -> torch.Tensor:
        shape = (self.backend.latent_channels, *latent_shape)
        noise = [torch.randn(shape, generator=torch.Generator().manual_seed(s % 2**63)) for s in seeds]
        return torch.stack(noise).to(self.backend.device)

    def run(
        self,
        req: GenerateRequest,
        progress: Callable[[int, int], None] | None = None,
        show_progress: bool = False,
    ) -> GenerationResult:
        """Encode → canvas → sample → decode, for the request's task; `req.draft` is left to the caller
        (`Pipeline.draft` / `Pipeline.finalize`; the server renders its own preview)."""
        prep = self.prepare(req)
        job = _Job(self, req, prep, _Steps(progress, show_progress))
        # Inference mode, not just no_grad: a few percent off every op, which small models feel.
        with torch.inference_mode(), job.steps_counter:
            videos = TASK_FUNCTIONS[req.task](job)
        metadata = self.metadata(req, prep)
        if prep.inputs.notes:
            metadata["notes"] = list(prep.inputs.notes)
        return GenerationResult(videos, prep.geometry.fps, metadata, job.last_latent)

    def draft(
        self,
        req: GenerateRequest,
        progress: Callable[[int, int], None] | None = None,
        show_progress: bool = False,
    ) -> GenerationResult:
        """A quick preview at about half the size (`draft_size`) and a quarter of the steps; its latent
        is the state to finalize."""
        # `run` ignores `req.draft` (the server renders its own preview for any task); a draft with
        # saved state is text (+ image) → video only.
        if req.task != "generate" or req.storyboard is not None:
            raise UserError("--draft works with plain generate only (no storyboard, no other task)")
        g = self.validate(dataclasses.replace(req, draft=False))
        if g.latent[0] > LONG_WINDOW_LATENTS:
            raise UserError(f"--draft works for clips up to {self._window_seconds(g):g} s at {g.fps:g} fps")
        width, height = draft_size(g.width, g.height, self.backend.size_multiple)
        steps = self._settings(req)[0]
        small = dataclasses.replace(
            req,
            aspect=None,
            size=None,
            draft=False,
            frames=g.frames,
            seconds=None,
            fps=g.fps,
            width=width,
            height=height,
            steps=max(2, steps // DRAFT_STEP_DIVISOR),
        )
        result = self.run(small, progress, show_progress)
        result.metadata["draft"] = {
            "final": {"width": g.width, "height": g.height, "steps": steps},
            "strength": FINALIZE_STRENGTH,
            "anchor_until": FINALIZE_ANCHOR_UNTIL,
        }
        return result

    def finalize(
        self,
        req: GenerateRequest,
        draft_latent: torch.Tensor,
        strength: float = FINALIZE_STRENGTH,
        anchor_until: float = FINALIZE_ANCHOR_UNTIL,
        progress: Callable[[int, int], None] | None = None,
        show_progress: bool = False,
    ) -> GenerationResult:
        """Full resolution from a draft: upsample its latent, re-noise to `strength`, finish (SDEdit),
        keeping the draft's own frequencies while t >= `anchor_until` (`canvas.finish_draft`)."""
        req = dataclasses.replace(req, draft=False, aspect=None, size=None)
        prep = self.prepare(req)
        g = prep.geometry
        # A draft is upsampled to the final: its latent may be smaller than the final's, never larger.
        if (
            draft_latent.ndim != 5
            or draft_latent.shape[1] != self.backend.latent_channels
            or draft_latent.shape[2] != g.latent[0]
            or draft_latent.shape[3] > g.latent[1]
            or draft_latent.shape[4] > g.latent[2]
        ):
            raise UserError(
                f"draft latent {tuple(draft_latent.shape)} does not fit this model and a clip of "
                f"{g.latent[0]} latent frames, at most {g.latent[1]} high and {g.latent[2]} wide"
            )
        # The canvas checks strength and anchor_until, so build it before they set the steps.
        canvas = finish_draft(g.latent, draft_latent[0], strength, self.backend.patch, anchor_until)
        job = _Job(self, req, prep, _Steps(progress, show_progress))
        if prep.inputs.image is not None or prep.inputs.last_image is not None:
            # A draft of image -> video: the final knows the given frames as the draft did.
            with torch.inference_mode():
                given = first_window_canvas(job, g.latent)
            canvas = dataclasses.replace(canvas, known=given.known, mask=given.mask, images=given.images)
        job.steps = max(1, round(prep.steps * strength))  # only the part of the schedule below `strength`
        job.steps_counter.total = job.steps
        with job.steps_counter:
            latent = job.sample(canvas, [req.seed + i for i in range(req.batch)], draft_latent.shape[0])
        videos = [carry_detail(v, given_images(job, len(v))) for v in job.decode(latent)]
        metadata = self.metadata(req, prep)
        metadata["finalized_from_draft"] = {
            "strength": strength,
            "anchor_until": anchor_until,
            "draft_latent_shape": list(draft_latent.shape),
        }
        return GenerationResult(videos, g.fps, metadata, latent.cpu())

    def _window_seconds(self, g: Geometry) -> float:
        return round(self.frames_of(LONG_WINDOW_LATENTS) / g.fps, 2)

    def frames_of(self, latents: int) -> int:
        return video_frames(latents, self.backend.time_factor)

    def metadata(self, req: GenerateRequest, prep: Prepared) -> dict:
        """Everything needed to reproduce the output (`cinegen generate --from out.json`): the request,
        and for information what it ran on. `--from` replays the request only: the model, device and
        dtype are the new run's, and another device or dtype (bf16 is CUDA's default) can change
        the frames slightly."""
        geometry, guidance = prep.geometry, prep.guidance
        request = req.to_dict() | {
            "width": geometry.width,
            "height": geometry.height,
            "frames": geometry.frames,
            "fps": geometry.fps,
            "steps": prep.steps,
            "guidance": guidance.text,
            "image_guidance": guidance.condition,
            "guidance_min_t": guidance.min_t,
            "sampler": prep.sampler,
            "context_t_floor": prep.context_t_floor,
            "context_guidance": prep.context_guidance,
            "aspect": None,
            "size": None,
            "seconds": None,
        }
        backend = self.backend
        return {"cinegen": cinegen.__version__, "model": self.model_name, "device": str(backend.device),
                "dtype": str(backend.dtype).removeprefix("torch."), "request": request}


# ----------------------------------------------------------------------------- one job's helpers


class _Steps:
    """Progress over all the sampler passes of one job (windows, shots), as (done, total) steps;
    with `show`, one bar for the whole job, so a minute in 20 windows shows the time left for all
    of them rather than 20 bars of one window each. A context manager: it closes the bar."""

    def __init__(self, progress: Callable[[int, int], None] | None, show: bool = False):
        self.progress, self.done, self.total = progress, 0, 1
        self.bar = tqdm(desc="denoising", unit="step", disable=not show, leave=False)

    def callback(self) -> Callable[[int, int], None] | None:
        if self.progress is None and self.bar.disable:
            return None
        base = self.done

        def report(step: int, _steps: int) -> None:
            self.done = base + step
            total = max(self.total, self.done)
            self.bar.total = total
            self.bar.update(self.done - self.bar.n)
            if self.progress is not None:
                self.progress(self.done, total)

        return report

    def __enter__(self) -> _Steps:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()


class _Job:
    """What every task needs: the model, the settings, the text contexts, encode/sample/decode."""

    def __init__(
        self, pipe: Pipeline, req: GenerateRequest, prep: Prepared, steps_counter: _Steps
    ):
        self.pipe, self.backend, self.req, self.prep = pipe, pipe.backend, req, prep
        self.g, self.inputs = prep.geometry, prep.inputs
        self.steps, self.guidance, self.sampler = prep.steps, prep.guidance, prep.sampler
        self.steps_counter = steps_counter
        self.f, self.patch = pipe.backend.time_factor, pipe.backend.patch
        self.last_latent: torch.Tensor | None = None
        self._contexts: dict[tuple[str, int], object] = {}

    def passes(self, n: int) -> None:
        self.steps_counter.total = n * self.steps

    def context(self, prompt: str, batch: int = 1):
        key = (prompt, batch)
        if key not in self._contexts:
            self._contexts[key] = self.backend.encode_text([prompt] * batch, self.g.fps)
        return self._contexts[key]

    # -- pixels <-> latents -----------------------------------------------------------------

    def encode(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 (F, H, W, 3) at the output size -> latent (C, T, h, w) at the render size."""
        return self.backend.encode_video(to_video_tensor(self._pad(frames)))[0]

    def pixels(self, image: np.ndarray) -> torch.Tensor:
        """uint8 (H, W, 3) at the output size -> (3, H, W) in [-1, 1] at the render size."""
        return to_video_tensor(self._pad(image[None]))[0, :, 0]

    def decode(self, latent: torch.Tensor) -> list[np.ndarray]:
        self.last_latent = latent.cpu()
        return [self._crop(v) for v in to_uint8(self.backend.decode_latent(latent))]

    def _pad(self, frames: np.ndarray) -> np.ndarray:
        (rw, rh), (w, h) = self.g.render, (self.g.width, self.g.height)
        top, left = (rh - h) // 2, (rw - w) // 2
        return np.pad(frames, ((0, 0), (top, rh - h - top), (left, rw - w - left), (0, 0)), mode="edge")

    def _crop(self, frames: np.ndarray) -> np.ndarray:
        (rw, rh), (w, h) = self.g.render, (self.g.width, self.g.height)
        top, left = (rh - h) // 2, (rw - w) // 2
        return np.ascontiguousarray(frames[:, top : top + h, left : left + w])

    def still_latent(self, image: np.ndarray, last: bool) -> torch.Tensor:
        """An image as latent frame 0 (a one-frame clip), or as a later latent frame (the image held
        for `time_factor` frames), which is what a last frame looks like inside a clip."""
        if not last:
            return self.encode(image[None])[:, :1]
        return self.encode(np.repeat(image[None], 1 + self.f, axis=0))[:, 1:2]

    # -- sampling ---------------------------------------------------------------------------

    def sample(
        self,
        canvas: Canvas,
        seeds: list[int],
        batch: int = 1,
        prompt: str | None = None,
        flow_edit: FlowEdit | None = None,
        guidance: Guidance | None = None,
    ) -> torch.Tensor:
        prompt = self.req.prompt if prompt is None else prompt
        tokens = math.prod(canvas.token_grid)
        return sample(
            self.backend,
            canvas,
            self.pipe._noise(canvas.shape, seeds),
            self.context(prompt, batch),
            self.context(self.req.negative, batch),
            steps=self.steps,
            guidance=self.guidance if guidance is None else guidance,
            sampler=self.sampler,
            shift=self.backend.time_shift(tokens),
            progress=self.steps_counter.callback(),
            flow_edit=flow_edit,
        )

    def frames_of(self, latents: int) -> int:
        return self.pipe.frames_of(latents)

    def window_seed(self, seed: int, window: int) -> int:
        return (seed * 1_000_003 + 7919 * window) % 2**63 if window else seed

    # -- windows: the building block of long video and extension ------------------------------

    def continue_forward(
        self,
        video: np.ndarray,
        new_frames: int,
        seed: int,
        prompt: str | None = None,
        anchor: np.ndarray | None = None,
        generated: bool = False,
        window: int = WINDOW_LATENTS,
    ) -> np.ndarray:
        """`video` followed by `new_frames` more, in windows that each know the recent past.

        Each window encodes `1 + f·k` context frames (the last frames; with `anchor`, the anchor
        frame then the last `f·k`) as k + 1 known latent frames and generates the rest: the causal
        VAE makes latent 0 a one-frame latent, as in training, so the anchor fits exactly there.
        A context of generated frames (`generated` video, or any window after the first) is given
        at the noise level `context_t_floor`: a model trained with `context_noise` then treats it as
        a little off and continues it, instead of copying and compounding its errors. A `generated`
        video's windows (a long video's) are guided on their context by `context_guidance`.
        """
        k = min(CONTEXT_LATENTS, (len(video) - 1) // self.f)
        n_max = window - k - 1
        out, w = [video], 1
        # Detail is carried into every window from one fixed frame, never from the frame just made
        # (see carry_detail): the anchor, which every window decodes alike at its frame 0, or else
        # the user's last frame, against its decode in the first window.
        given, given_decoded = video[-1], None
        recent = video[-1 - self.f * k :]
        guidance = dataclasses.replace(self.guidance, condition=self.prep.context_guidance) if generated else None
        while new_frames > 0:
            context = recent if anchor is None else np.concatenate([anchor[None], recent[1:]])
            n = min(n_max, -(-new_frames // self.f))
            known = self.encode(context)
            shape = (k + 1 + n, *known.shape[2:])
            known = torch.cat([known, known.new_zeros(known.shape[0], n, *known.shape[2:])], dim=1)
            t_floor = self.prep.context_t_floor if generated or w > 1 else 0.0
            canvas = keep_frames(shape, known, list(range(k + 1)), self.patch, t_floor)
            frames = self.decode(self.sample(canvas, [self.window_seed(seed, w)], prompt=prompt, guidance=guidance))[0]
            if anchor is not None:
                frames = carry_detail(frames, {0: anchor})
            else:
                given_decoded = frames[self.f * k] if given_decoded is None else given_decoded
                frames = carry_detail(frames, {self.f * k: given}, {self.f * k: given_decoded})
            new = frames[1 + self.f * k :][:new_frames]
            out.append(new)
            recent = np.concatenate([recent, new])[-1 - self.f * k :]
            new_frames -= len(new)
            w += 1
        return np.concatenate(out)

    def continue_backward(self, video: np.ndarray, new_frames: int, seed: int) -> np.ndarray:
        """`new_frames` before `video`, window by window: the first latent frames of the clip sit at
        the end of each window (latents 1..k of its first 1 + f·k frames), the new ones before them."""
        k = min(CONTEXT_LATENTS, (len(video) - 1) // self.f)
        n_max = WINDOW_LATENTS - k - 1
        w = 1
        given, given_decoded = video[0], None
        while new_frames > 0:
            n = min(n_max, -(-new_frames // self.f))
            known = self.encode(video[: 1 + self.f * k])[:, 1:]
            shape = (n + 1 + k, *known.shape[2:])
            known = torch.cat([known.new_zeros(known.shape[0], n + 1, *known.shape[2:]), known], dim=1)
            canvas = keep_frames(shape, known, list(range(n + 1, n + 1 + k)), self.patch)
            frames = self.decode(self.sample(canvas, [self.window_seed(seed, w)]))[0]
            # Frame f·n of the window stands where the given first frame is (in the first window).
            given_decoded = frames[self.f * n] if given_decoded is None else given_decoded
            frames = carry_detail(frames, {self.f * n: given}, {self.f * n: given_decoded})
            new = frames[: self.f * n][-new_frames:]
            video = np.concatenate([new, video])
            new_frames -= len(new)
            w += 1
        return video

    def bridge(
        self, a: np.ndarray, b: np.ndarray, latents: int, seed: int, prompt: str | None = None
    ) -> np.ndarray:
        """The frames between the end of `a` and the start of `b` (`bridge_frames`): the tail of
        `a` is the head of the canvas, the start of `b` its tail, the middle is generated."""
        k = CONNECT_CONTEXT_LATENTS
        head = self.encode(a[-1 - self.f * k :])
        tail = self.encode(b[: 1 + self.f * k])[:, 1:]
        middle = head.new_zeros(head.shape[0], latents, *head.shape[2:])
        known = torch.cat([head, middle, tail], dim=1)
        canvas = keep_ends(tuple(known.shape[1:]), known, k + 1, k, self.patch)
        frames = self.decode(self.sample(canvas, [seed], prompt=prompt))[0]
        frames = carry_detail(frames, {self.f * k: a[-1], self.f * (k + latents): b[0]})
        # The last generated frame stands where b[0] is; b itself follows.
        return frames[1 + self.f * k : 1 + self.f * k + bridge_frames(latents, self.f)]


def check_guidance(name: str, value: float) -> None:
    if not 0.0 <= value <= 30.0 or math.isnan(value):
        raise UserError(f"{name} {value} is outside 0..30")


def draft_size(width: int, height: int, multiple: int) -> tuple[int, int]:
    """A draft's (width, height): half the final's, but with a short side of at least
    DRAFT_MIN_SIDE (never more than the final's own), keeping the aspect, in multiples of
    `multiple`. Below the sizes it trained on the default model hardly moves anything: on 24
    held-out captions its 64 px clips scored adherence 0 (5 steps) and 0.125 (20 steps), with
    motion right in 17% and 25%, where 80 px scored 0.375 (5 steps) and 96 px 0.625 (20 steps)."""
    short = min(width, height)
    scale = min(1.0, max(0.5, DRAFT_MIN_SIDE / short))
    return (max(multiple, round(width * scale / multiple) * multiple),
            max(multiple, round(height * scale / multiple) * multiple))


def _clip_length(frames: int, fps: float) -> str:
    """`frames` as users read a length in messages: "21 frames (2.6 s at 8 fps)"."""
    return f"{frames} frames ({frames / fps:.1f} s at {fps:g} fps)"


def config_geometry(
    config: ModelConfig, req: GenerateRequest, source: tuple[int, int] | None = None
) -> Geometry:
    """`Pipeline.geometry` for a native model known by its config alone (`read_config`), no weights
    loaded: the same sizes, frame counts and errors (size multiple, time factor, bounds), so that a
    server can refuse what the model cannot render before a worker takes the job."""
    from cinegen.backends.native import NativeBackend

    # A backend without its networks: geometry reads only its factors and the config's defaults.
    shape = NativeBackend(config, None, None, None, torch.device("cpu"))
    return Pipeline(shape, config.sampling, config.name).geometry(req, source)


def carry_detail(
    frames: np.ndarray, known: dict[int, np.ndarray], decoded: dict[int, np.ndarray] | None = None
) -> np.ndarray:
    """Put given frames back exactly and carry their detail into the generated ones.

    `known` maps a frame index of `frames` (a decoded window) to the uint8 frame the user gave
    for that place. The decode of a known frame misses what the VAE cannot reconstruct (fine
    texture, exact colours); that residual is added to every frame wherever the frame still
    shows what the known one showed (close to its decode), so a given first frame comes back
    exactly and the background after a joint keeps the source's detail instead of jumping to
    the VAE's version of it. With several known frames each one's weight falls linearly to 0
    at its neighbours. Moving content differs from the reference and is left as generated.

    `decoded` gives a known frame's decode from an earlier window, for the later windows of an
    extension: they carry the user's detail as measured at the joint. Carry from a fixed frame,
    never from the last frame of the window before: that frame's residual holds its window's
    drift, and carrying it into the next window compounds it. (On a black background that the
    model kept at level 25-28 in every window of a generated minute, the carried residuals took
    it to 50, which the detector reads as gray; with the anchor's residual instead the background
    held in 16 of 16 held-out minutes, against 10 of 16.)
    """
    if not known:
        return frames
    window = frames.astype(np.float32)
    out = window.copy()
    decoded = decoded or {}
    places = sorted(known)
    t = np.arange(len(frames))
    for k, i in enumerate(places):
        weight = np.interp(t, places, np.eye(len(places))[k]) if len(places) > 1 else np.ones(len(frames))
        reference = decoded[i].astype(np.float32) if i in decoded else window[i]
        residual = known[i].astype(np.float32) - reference
        distance = np.abs(window - reference).max(axis=-1, keepdims=True)
        same = np.clip(2.0 - distance / DETAIL_TOLERANCE, 0.0, 1.0)
        out += weight[:, None, None, None] * same * residual
    return np.clip(out.round(), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- the length each task makes
# The tasks below decide their lengths with these rules, and `made_frames` adds them up, so that the
# length a server shows and charges before a job runs is the length the job makes.


def added_frames(g: Geometry) -> int:
    """The frames extend adds after the clip (or before it): all the request's but the first, whose
    place the clip's last (or first) frame takes."""
    return g.frames - 1


def transition_latents(g: Geometry) -> int:
    """The latent frames of connect's transition: the request's after the first (how many may be is
    checked in Pipeline._check_length)."""
    return g.latent[0] - 1


def bridge_frames(latents: int, time_factor: int) -> int:
    """The frames a bridge of `latents` latent frames puts between two clips (`_Job.bridge`): f for
    each, less the last, where the second clip's first frame stands."""
    return time_factor * latents - 1


def text_loop_latents(g: Geometry, time_factor: int) -> int:
    """A text loop's latent frames, each f frames: on circular time none is the causal VAE's
    one-frame start, so the loop repeats every f·T frames, T chosen nearest the request."""
    return max(2, round(g.frames / time_factor))


def most_kept_frames(time_factor: int) -> int:
    """The most of a source video edit and loop keep: MAX_CANVAS_LATENTS latent frames."""
    return video_frames(MAX_CANVAS_LATENTS, time_factor)


def kept_source_frames(req: GenerateRequest, g: Geometry, frames: int, time_factor: int) -> int:
    """How much of a source video of `frames` frames edit and loop keep: 1 + f·k frames, at most
    `most_kept_frames`, and no more than the length asked for (without one, all)."""
    keep = min(frames, g.frames) if req.frames is not None or req.seconds is not None else frames
    return min(most_kept_frames(time_factor), 1 + (keep - 1) // time_factor * time_factor)


def loop_bridge_latents(source_frames: int, time_factor: int) -> int:
    """The latent frames of the bridge from a video loop's end back to its start."""
    return max(2, round(LOOP_BRIDGE_SHARE * (source_frames - 1) / time_factor))


def loaded_fps(req: GenerateRequest, video: MediaInfo) -> float:
    """The rate a task gets a source video at: a requested fps that differs from the clip's, else the
    clip's (`inputs.load`)."""
    return req.fps if req.fps is not None and inputs_mod.rates_differ(req.fps, video.fps) else video.fps


def check_mask_length(mask: MediaInfo, video: MediaInfo) -> None:
    """`inputs.read_mask`'s rule on a mask's frames (`inputs.check_mask_frames`), for a source of
    `video.frames` as `inputs.load` reads it: at most MAX_SOURCE_FRAMES, a longer mask cut alike."""
    read = min(video.frames, MAX_SOURCE_FRAMES)
    inputs_mod.check_mask_frames("mask", mask.frames, read, cut=read >= MAX_SOURCE_FRAMES)


def loaded_frames(req: GenerateRequest, video: MediaInfo, first: MediaInfo | None = None) -> int:
    """The frames a task gets of a source video of `video.frames` frames at `video.fps`:
    `inputs.load` reads at most MAX_SOURCE_FRAMES and resamples them to a requested fps that differs,
    and connect's second video (`first`: the first video) to the rate the first is loaded at."""
    frames = min(video.frames, MAX_SOURCE_FRAMES)
    to_fps = loaded_fps(req, video if first is None else first)
    if inputs_mod.rates_differ(to_fps, video.fps):
        return len(inputs_mod.resample_index(frames, video.fps, to_fps))
    return frames


def made_frames(req: GenerateRequest, g: Geometry, time_factor: int, video: MediaInfo | None = None) -> int:
    """The frames the request's task makes (extend and connect: the part they add), by the rules the
    task functions use. `g` is the request's geometry, `video` the source video's length and rate:
    an edit keeps part of it, a loop of a video is that part and a bridge back (without `video`, a
    loop is a text loop).

    A request's seconds become whole latent frames (`frame_count`: 0.01 s makes 5 frames), so this is
    what a server shows and charges as the job's length, rather than the seconds asked for."""
    f = time_factor
    if req.task == "extend":
        return added_frames(g)
    if req.task == "connect":
        return bridge_frames(transition_latents(g), f)
    if req.task == "loop" and video is None:
        return f * text_loop_latents(g, f)
    if req.task in ("edit", "loop"):
        if video is None:
            raise ValueError("an edit's length follows its source video; give `video`")
        kept = kept_source_frames(req, g, loaded_frames(req, video), f)
        return kept if req.task == "edit" else kept + bridge_frames(loop_bridge_latents(kept, f), f)
    return g.frames  # generate


# ----------------------------------------------------------------------------- the tasks


def task_generate(job: _Job) -> list[np.ndarray]:
    """Text (+ first / last image) → video; longer than one window: windows with an anchor."""
    if job.prep.shots is not None:
        return [storyboard(job, job.req.seed + i) for i in range(job.req.batch)]
    g = job.g
    if g.latent[0] <= LONG_WINDOW_LATENTS:
        job.passes(1)
        latent = job.sample(
            first_window_canvas(job, g.latent),
            [job.req.seed + i for i in range(job.req.batch)],
            job.req.batch,
        )
        return [carry_detail(v, given_images(job, len(v)))[: g.frames] for v in job.decode(latent)]
    job.passes(job.req.batch * long_video_passes(job, g.frames))
    return [long_video(job, job.req.prompt, g.frames, job.req.seed + i) for i in range(job.req.batch)]


def first_window_canvas(job: _Job, shape: tuple[int, int, int]) -> Canvas:
    first, last = job.inputs.image, job.inputs.last_image
    if first is None and last is None:
        return text_to_video(shape, job.patch)
    known = torch.zeros(job.backend.latent_channels, *shape)
    frames, images = [], {}  # latent frames known; the images at their video frames (a last one held)
    if first is not None:
        known[:, :1] = job.still_latent(first, last=False)
        frames.append(0)
        images[0] = job.pixels(first)
    if last is not None:
        known[:, -1:] = job.still_latent(last, last=True)
        frames.append(shape[0] - 1)
        end = job.frames_of(shape[0])
        images |= {i: job.pixels(last) for i in range(end - job.f, end)}
    return dataclasses.replace(keep_frames(shape, known, frames, job.patch), images=images)


def given_images(job: _Job, frames: int) -> dict[int, np.ndarray]:
    """The user's first / last images by their place in a decoded window of `frames` frames."""
    places = {0: job.inputs.image, frames - 1: job.inputs.last_image}
    return {i: image for i, image in places.items() if image is not None}


def long_video_passes(job: _Job, frames: int) -> int:
    per_window = job.f * (LONG_WINDOW_LATENTS - CONTEXT_LATENTS - 1)
    return 1 + -(-(frames - job.frames_of(LONG_WINDOW_LATENTS)) // per_window)


def long_video(job: _Job, prompt: str, frames: int, seed: int) -> np.ndarray:
    """One window, then windows conditioned on the last frames and on the first frame (the anchor),
    so colors, shapes and the scene hold; decoded window by window, so memory stays flat."""
    shape = (min(LONG_WINDOW_LATENTS, 1 + (frames - 1) // job.f), *job.g.latent[1:])
    first = job.decode(job.sample(first_window_canvas(job, shape), [seed], prompt=prompt))[0]
    first = carry_detail(first, given_images(job, len(first)))
    if len(first) >= frames:
        return first[:frames]
    return job.continue_forward(first, frames - len(first), seed, prompt=prompt, anchor=first[0], generated=True,
                                window=LONG_WINDOW_LATENTS)


def storyboard(job: _Job, seed: int) -> np.ndarray:
    """Shots one after another with cuts between them; the same seed for every shot, so an object
    described the same way in two shots is drawn from the same noise."""
    shots = job.prep.shots
    lengths = shot_frames(shots, job.g.fps, job.f)
    job.passes(sum(long_video_passes(job, n) if n > job.frames_of(LONG_WINDOW_LATENTS) else 1 for n in lengths))
    return np.concatenate([long_video(job, s.prompt, n, seed) for s, n in zip(shots, lengths, strict=True)])


def kept_source(job: _Job, video: np.ndarray) -> np.ndarray:
    """The source as edit and loop keep it (`kept_source_frames`), with a note if cut."""
    keep = kept_source_frames(job.req, job.g, len(video), job.f)
    if keep < len(video):
        job.inputs.notes.append(
            f"video has {len(video)} frames; using the first {keep} (1 + {job.f}k, at most "
            f"{most_kept_frames(job.f)})"
        )
    return video[:keep]


def task_edit(job: _Job) -> list[np.ndarray]:
    """SDEdit restyle; FlowEdit with a source prompt; with a mask only the white region changes."""
    inputs = job.inputs
    source = kept_source(job, inputs.video)
    latent = job.encode(source)
    shape = tuple(latent.shape[1:])
    white = inputs.mask[: len(source)] if inputs.mask is not None else None
    if white is None:
        strength = job.req.strength if job.req.strength is not None else EDIT_STRENGTH
        canvas = edit(shape, latent, strength, job.patch)
    else:
        strength = job.req.strength if job.req.strength is not None else 1.0
        cell = job.backend.spatial_factor * job.patch
        keep = pixel_mask_to_tokens(torch.from_numpy(job._pad(white[..., None])[..., 0]), job.f, cell)
        canvas = region_edit(shape, latent, keep, job.patch, strength)
    flow_edit = None
    if job.req.source_prompt:
        if canvas.init is None:
            canvas = dataclasses.replace(canvas, init=latent, strength=1.0)
        flow_edit = FlowEdit(job.context(job.req.source_prompt, job.req.batch), seed=job.req.seed)
    job.passes(1)
    videos = job.decode(
        job.sample(
            canvas, [job.req.seed + i for i in range(job.req.batch)], job.req.batch, flow_edit=flow_edit
        )
    )
    if white is None:
        return videos
    # Outside the mask the source comes back exactly: the latent is only an approximation of it.
    return [np.where(white[..., None], v, source) for v in videos]


def task_extend(job: _Job) -> list[np.ndarray]:
    """The clip, then `seconds` more after its end (or before its start, `backward`)."""
    video = job.inputs.video
    new_frames = added_frames(job.g)
    per_window = job.f * (WINDOW_LATENTS - CONTEXT_LATENTS - 1)
    job.passes(job.req.batch * -(-new_frames // per_window))
    out = []
    for i in range(job.req.batch):
        if job.req.backward:
            out.append(job.continue_backward(video, new_frames, job.req.seed + i))
        else:
            out.append(job.continue_forward(video, new_frames, job.req.seed + i))
    return out


def task_connect(job: _Job) -> list[np.ndarray]:
    """A, a generated transition of about `seconds`, then B."""
    a, b = job.inputs.video, job.inputs.video_b
    latents = transition_latents(job.g)
    job.passes(job.req.batch)
    return [np.concatenate([a, job.bridge(a, b, latents, job.req.seed + i), b]) for i in range(job.req.batch)]


def task_loop(job: _Job) -> list[np.ndarray]:
    """Text: a canvas on circular time. Video: the clip, then a bridge from its end back to its start."""
    g, video = job.g, job.inputs.video
    job.passes(job.req.batch)
    if video is None:
        shape = (text_loop_latents(g, job.f), *g.latent[1:])
        if shape[0] * job.f != g.frames:
            job.inputs.notes.append(f"a loop repeats every {shape[0] * job.f} frames (a multiple of {job.f})")
        latent = job.sample(loop(shape, job.patch), [job.req.seed + i for i in range(job.req.batch)], job.req.batch)
        # Decode the loop twice over and keep the second turn: the causal decoder then draws its
        # start right after its own end, so the seam is decoded like any other frame change.
        turns = job.decode(torch.cat([latent, latent], dim=2))
        job.last_latent = latent.cpu()
        return [v[-job.f * shape[0] :] for v in turns]
    source = kept_source(job, video)
    latents = loop_bridge_latents(len(source), job.f)
    return [
        np.concatenate([source, job.bridge(source, source, latents, job.req.seed + i)])
        for i in range(job.req.batch)
    ]


TASK_FUNCTIONS: dict[str, Callable[[_Job], list[np.ndarray]]] = {
    "generate": task_generate,
    "edit": task_edit,
    "extend": task_extend,
    "connect": task_connect,
    "loop": task_loop,
}
