"""Request and response bodies of the HTTP API (Pydantic), in the shape of the common video APIs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Task = Literal["generate", "edit", "extend", "connect", "loop"]
Status = Literal["queued", "in_progress", "completed", "failed", "cancelled"]
VIDEO_ID = r"^video_[0-9a-f]{32}$"
MAX_SEED = 2**31 - 1


class Strict(BaseModel):
    # Unknown fields are errors (a typo must not silently fall back to a default); no NaN/inf.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Overrides(Strict):
    """Sampling settings any request may set; left out, the model's defaults apply."""

    negative_prompt: str | None = Field(None, max_length=2000, description="What the video should not show.")
    seed: int | None = Field(
        None, ge=0, le=MAX_SEED, description="Left out: chosen by the server and recorded."
    )
    steps: int | None = Field(None, ge=1, le=200, description="Denoising steps.")
    guidance: float | None = Field(None, ge=0, le=30, description="Classifier-free guidance scale.")
    draft: bool | None = Field(None, description="Render a fast low-resolution draft first (variant=draft).")


class VideoCreate(Overrides):
    """POST /v1/videos: as JSON, or as multipart/form-data with the same fields plus input files
    `image`, `last_image` (PNG/JPEG), `video`, `video_b` (mp4/webm/gif) and `mask` (either)."""

    prompt: str = Field(min_length=1, max_length=2000)
    model: str | None = Field(None, max_length=200, description="A model id from GET /v1/models.")
    size: str | None = Field(None, pattern=r"^[1-9][0-9]{0,3}x[1-9][0-9]{0,3}$", description="WIDTHxHEIGHT.")
    aspect: str | None = Field(
        None, pattern=r"^[1-9][0-9]?:[1-9][0-9]?$", description='e.g. "16:9" (not with size).'
    )
    resolution: int | None = Field(
        None,
        ge=16,
        le=2048,
        description="Short side in pixels; with aspect, or alone to follow the uploaded image's or "
        "video's aspect (without one, the model's).",
    )
    seconds: float = Field(
        2.0,
        gt=0,
        le=600,
        description="Rendered as the nearest frame count the model makes (1 + 4k frames for the shipped "
        "model, at least 5): the video's `seconds` says the length made.",
    )
    fps: float = Field(8.0, ge=1, le=60)
    sampler: Literal["euler", "heun"] = "euler"
    task: Task = Field(
        "generate",
        description="generate (text→video, or image→video with `image`), edit, extend, connect or loop.",
    )
    strength: float | None = Field(None, gt=0, le=1, description="How far an edit may move from its source.")
    backward: bool = Field(False, description="extend: add time before the video instead of after it.")

    @model_validator(mode="after")
    def _one_way_to_size(self) -> VideoCreate:
        if self.size is not None and (self.aspect is not None or self.resolution is not None):
            raise ValueError("give either size, or aspect and/or resolution, not both")
        return self


class FollowUp(Overrides):
    # strict, as POST /v1/videos reads JSON: "1" for seconds is an error, not 1 (these bodies are
    # JSON only; only a multipart form's fields are strings to convert).
    model_config = ConfigDict(strict=True)


class RemixCreate(FollowUp):
    """Re-render a finished video with a new prompt (an edit that starts from it)."""

    prompt: str = Field(min_length=1, max_length=2000)
    strength: float | None = Field(None, gt=0, le=1)


class ExtendCreate(FollowUp):
    """Continue a finished video by `seconds` (or lead into it, with backward)."""

    seconds: float = Field(gt=0, le=600)
    prompt: str | None = Field(
        None, min_length=1, max_length=2000, description="Left out: the source's prompt."
    )
    backward: bool = False


class LoopCreate(FollowUp):
    """Turn a finished video into a seamless loop."""

    prompt: str | None = Field(
        None, min_length=1, max_length=2000, description="Left out: the source's prompt."
    )


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Video(BaseModel):
    id: str
    object: Literal["video"] = "video"
    model: str
    status: Status
    progress: float = Field(ge=0, le=1)
    created_at: int
    started_at: int | None = None
    completed_at: int | None = None
    task: str
    prompt: str
    seconds: float = Field(
        description="The length rendered, frames / fps: the requested seconds rounded to the frames the model "
        "makes (extend and connect: the part added); a loop of a video is the part of it kept and a bridge back"
    )
    fps: float
    size: str | None = None
    seed: int | None = None
    remixed_from_video_id: str | None = None
    cancel_requested: bool = False
    has_draft: bool = False
    error: ErrorDetail | None = None
    metadata: dict[str, Any] | None = None
    deleted: bool = False


class VideoList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Video]
    first_id: str | None
    last_id: str | None
    has_more: bool


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    default: bool
    tasks: list[str]


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class Health(BaseModel):
    status: Literal["ok"]
    queue_length: int
    jobs_running: int
    jobs_completed: int
    jobs_failed: int
    jobs_cancelled: int
    mean_seconds_per_job: float
