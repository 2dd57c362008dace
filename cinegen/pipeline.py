"""Generator: text encoder + VAE + denoiser + sampler behind one call.

`Pipeline.run(request)` is what the CLI and the server both call. It reads top to bottom:
validate the request → encode text and inputs → build the canvas → sample → decode.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import cinegen
from cinegen.backends import Backend
from cinegen.canvas import Canvas, text_to_video
from cinegen.errors import UserError
from cinegen.sampling import SAMPLERS, Guidance, sample

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "weights"
TASKS = ("generate",)
MIN_SIDE, MAX_SIDE = 16, 1920
MAX_SECONDS = 600.0
MAX_FPS = 60.0
DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}


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

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GenerateRequest:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise UserError(f"unknown request fields {sorted(unknown)}; allowed: {sorted(names)}")
        return cls(**data)


@dataclass
class Geometry:
    """Resolved output size in pixels and frames, and the latent shape it maps to."""

    width: int
    height: int
    frames: int
    fps: float
    latent: tuple[int, int, int]  # (T, H, W)


@dataclass
class GenerationResult:
    videos: list[np.ndarray]  # each uint8 (T, H, W, 3)
    fps: float
    metadata: dict = field(default_factory=dict)
    latents: torch.Tensor | None = None  # (B, C, T, H, W), for drafts and chaining

    @property
    def frames(self) -> np.ndarray:
        return self.videos[0]


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
        raise UserError(f"aspect {aspect!r} is not W:H with positive integers and ratio at most 4 "
                        "(e.g. 16:9, 9:16, 1:1, 4:3)") from None
    return w, h


def to_video_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float (1, 3, T, H, W) in [-1, 1]."""
    return torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0


def to_uint8(video: torch.Tensor) -> list[np.ndarray]:
    """float (B, 3, T, H, W) in [-1, 1] -> list of uint8 (T, H, W, 3)."""
    x = ((video.float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
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
    ) -> Pipeline:
        """`model`: a cinegen model directory (default: the shipped one), a diffusers directory of a
        supported open model (Wan, LTX-Video, CogVideoX) or its hub id (`cinegen.backends.loading`)."""
        from cinegen.backends.diffusers_common import Options
        from cinegen.backends.loading import load_backend

        dev = resolve_device(device)
        options = Options(offload=offload, vae_tiling=vae_tiling, vae_slicing=vae_slicing)
        backend = load_backend(model or DEFAULT_MODEL_DIR, dev, resolve_dtype(dtype, dev), options=options)
        return cls(backend, backend.defaults, backend.name)

    # -- request → geometry ---------------------------------------------------------------

    def geometry(self, req: GenerateRequest) -> Geometry:
        d, m = self.defaults, self.backend.size_multiple
        if req.aspect is not None:
            if req.width is not None or req.height is not None:
                raise UserError("give either --width/--height or --aspect/--size, not both")
            aw, ah = parse_aspect(req.aspect)
            short = req.size or min(d.width, d.height)
            scale = short / min(aw, ah)
            width, height = (round(aw * scale / m) * m, round(ah * scale / m) * m)
        else:
            width = req.width if req.width is not None else d.width
            height = req.height if req.height is not None else d.height
        for name, value in (("width", width), ("height", height)):
            if not MIN_SIDE <= value <= MAX_SIDE or value % m:
                raise UserError(f"{name} {value} must be a multiple of {m} between {max(m, MIN_SIDE)} and {MAX_SIDE}")
        fps = float(req.fps if req.fps is not None else d.fps)
        if not 1.0 <= fps <= MAX_FPS:
            raise UserError(f"fps {fps:g} is outside 1..{MAX_FPS:g}")
        f = self.backend.time_factor
        if req.frames is not None:
            if req.frames < 1 or (req.frames - 1) % f:
                raise UserError(f"frames {req.frames} must be 1 + {f}k (1, {1 + f}, {1 + 2 * f}, ...)")
            frames = req.frames
        else:
            seconds = float(req.seconds if req.seconds is not None else d.seconds)
            if not 0.0 < seconds <= MAX_SECONDS:
                raise UserError(f"seconds {seconds:g} is outside (0, {MAX_SECONDS:g}]")
            frames = 1 + f * max(1, round((seconds * fps - 1) / f))
        s = self.backend.spatial_factor
        latent = (1 + (frames - 1) // f, height // s, width // s)
        return Geometry(width, height, frames, fps, latent)

    def _settings(self, req: GenerateRequest) -> tuple[int, Guidance, str]:
        d = self.defaults
        steps = req.steps if req.steps is not None else d.steps
        if not 1 <= steps <= 1000:
            raise UserError(f"steps {steps} is outside 1..1000")
        g = req.guidance if req.guidance is not None else d.guidance
        gi = req.image_guidance if req.image_guidance is not None else 1.0
        for name, value in (("guidance", g), ("image guidance", gi)):
            if not 0.0 <= value <= 30.0 or math.isnan(value):
                raise UserError(f"{name} {value} is outside 0..30")
        sampler = req.sampler or d.sampler
        if sampler not in SAMPLERS:
            raise UserError(f"sampler {sampler!r} is not one of {', '.join(SAMPLERS)}")
        return steps, Guidance(text=g, condition=gi), sampler

    def validate(self, req: GenerateRequest) -> Geometry:
        if not req.prompt or not req.prompt.strip():
            raise UserError("prompt is empty; describe the video to generate")
        if req.task not in TASKS:
            raise UserError(f"task {req.task!r} is not one of {', '.join(TASKS)}")
        if not 1 <= req.batch <= 16:
            raise UserError(f"batch {req.batch} is outside 1..16")
        if not 0 <= req.seed < 2**63:
            raise UserError(f"seed {req.seed} is outside 0..2^63-1")
        self._settings(req)
        return self.geometry(req)

    # -- the run ----------------------------------------------------------------------------

    def noise(self, geometry: Geometry, seed: int, batch: int) -> torch.Tensor:
        """Noise drawn on the CPU from the seed, so results do not depend on the device."""
        shape = (self.backend.latent_channels, *geometry.latent)
        noise = [torch.randn(shape, generator=torch.Generator().manual_seed(seed + i)) for i in range(batch)]
        return torch.stack(noise).to(self.backend.device)

    def build_canvas(self, req: GenerateRequest, geometry: Geometry) -> Canvas:
        return text_to_video(geometry.latent, self.backend.patch)

    def run(self, req: GenerateRequest, progress: Callable[[int, int], None] | None = None,
            show_progress: bool = False) -> GenerationResult:
        geometry = self.validate(req)
        steps, guidance, sampler = self._settings(req)
        canvas = self.build_canvas(req, geometry)
        cond = self.backend.encode_text([req.prompt] * req.batch, geometry.fps)
        uncond = self.backend.encode_text([req.negative] * req.batch, geometry.fps)
        tokens = math.prod(canvas.token_grid)
        latent = sample(self.backend, canvas, self.noise(geometry, req.seed, req.batch), cond, uncond,
                        steps=steps, guidance=guidance, sampler=sampler, shift=self.backend.time_shift(tokens),
                        progress=progress, show_progress=show_progress)
        video = self.backend.decode_latent(latent)[:, :, : geometry.frames]
        metadata = self.metadata(req, geometry, steps, guidance, sampler)
        return GenerationResult(to_uint8(video), geometry.fps, metadata, latent.cpu())

    def metadata(self, req: GenerateRequest, geometry: Geometry, steps: int, guidance: Guidance, sampler: str) -> dict:
        """Everything needed to reproduce the output (`cinegen generate --from out.json`)."""
        request = req.to_dict() | {
            "width": geometry.width, "height": geometry.height, "frames": geometry.frames, "fps": geometry.fps,
            "steps": steps, "guidance": guidance.text, "image_guidance": guidance.condition, "sampler": sampler,
            "aspect": None, "size": None, "seconds": None,
        }
        return {"cinegen": cinegen.__version__, "model": self.model_name, "request": request}
