"""The HTTP API and the web page (FastAPI). Workers run elsewhere; they meet here only in the database."""

import contextlib
import hashlib
import json
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from cinegen.config import ModelConfig
from cinegen.errors import UserError
from cinegen.inputs import ASPECT_TOLERANCE, rates_differ, resampled_too_short
from cinegen.media import MediaInfo
from cinegen.pipeline import (
    DEFAULT_MODEL_DIR,
    TASK_NEEDS_FILES,
    TASK_TAKES_FILES,
    TASKS,
    GenerateRequest,
    Geometry,
    check_mask_length,
    config_geometry,
    frame_count,
    loaded_fps,
    loaded_frames,
    made_frames,
    most_kept_frames,
    parse_aspect,
)
from cinegen.serve import auth
from cinegen.serve.db import Job, make_engine, make_sessionmaker
from cinegen.serve.limits import BodyLimitMiddleware, BodyTooLarge
from cinegen.serve.queue import JobQueue, NewJob, QueueError, request_hash
from cinegen.serve.schemas import (
    VIDEO_ID,
    ErrorDetail,
    ErrorResponse,
    ExtendCreate,
    Health,
    LoopCreate,
    Model,
    ModelList,
    Overrides,
    RemixCreate,
    Video,
    VideoCreate,
    VideoList,
)
from cinegen.serve.settings import Settings
from cinegen.serve.storage import Storage
from cinegen.serve.uploads import (
    IMAGE_ROLES,
    MASK_ROLES,
    VIDEO_ROLES,
    UploadLimits,
    UploadTooLarge,
    save_upload,
)

STATIC = Path(__file__).parent / "static"
FILE_ROLES = IMAGE_ROLES + VIDEO_ROLES + MASK_ROLES
# The uploads whose size the output follows when none is asked for, first found first (Inputs.source_size).
SOURCE_ROLES = ("video", "image", "last_image")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorResponse(error=ErrorDetail(code=code, message=message))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


# What a value of each pattern-checked field looks like: Pydantic's own message is the regex.
PATTERN_HELP = {
    "size": "must be WIDTHxHEIGHT in pixels, e.g. 1280x720",
    "aspect": 'must be W:H with whole numbers from 1 to 99, e.g. "16:9"',
    "video_id": "must be video_ followed by 32 lowercase hex digits",
    "after": "must be a video id, video_ followed by 32 lowercase hex digits",
}


def over_server_limit(field: str, value: float, limit: float) -> str:
    return f"{field} {value:g} is over this server's limit of {limit:g}"


def _validation_message(
    errors: list[dict[str, Any]], fields: tuple[str, ...] = (), limits: dict[str, float] | None = None
) -> str:
    """Pydantic's errors as one line that names each bad value and what is allowed instead.

    `fields` are the body's field names, listed when an unknown one is sent (a typo such as
    "width" for "size" should learn the right name, not only that its own is wrong). `limits` are
    this server's own caps, lower than the schema's: a value over both is told the server's, or it
    learns it only on its next try."""
    limits = limits or {}
    parts = []
    for e in errors[:3]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path", "header"))
        kind, msg, value = e.get("type"), str(e.get("msg")).removeprefix("Value error, "), e.get("input")
        if kind == "missing":
            parts.append(f"{where} is required" if where else msg)
        elif kind == "extra_forbidden":
            allowed = f"; allowed: {', '.join(fields)}" if fields else ""
            parts.append(f"{where} is not a field{allowed}")
        elif kind == "string_pattern_mismatch" and where in PATTERN_HELP:
            parts.append(f"{where} {value!r} {PATTERN_HELP[where]}")
        elif kind == "less_than_equal" and where in limits and _number(value) > limits[where]:
            parts.append(over_server_limit(where, _number(value), limits[where]))
        elif where and isinstance(value, (str, int, float, bool)) and len(repr(value)) <= 80:
            parts.append(f"{where} {value!r}: {msg}")
        else:
            parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


# The JSON body of each follow-up endpoint, by the last part of its path.
FOLLOW_UP_BODIES = {"remix": RemixCreate, "extend": ExtendCreate, "loop": LoopCreate}
ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 413, 415, 422, 429)}


def _create_body_schemas() -> dict[str, Any]:
    """OpenAPI component schemas for POST /v1/videos, whose body FastAPI cannot infer because the
    endpoint parses JSON or multipart itself: the JSON object, and the same fields plus files."""
    json_schema = VideoCreate.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = json_schema.pop("$defs", {})
    form = {**json_schema, "title": "VideoCreateForm", "properties": dict(json_schema["properties"])}
    for role in FILE_ROLES:
        form["properties"][role] = {"type": "string", "format": "binary", "description": f"Uploaded {role}."}
    return {**defs, "VideoCreate": json_schema, "VideoCreateForm": form}


CREATE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/VideoCreate"}},
            "multipart/form-data": {"schema": {"$ref": "#/components/schemas/VideoCreateForm"}},
        },
    }
}


def to_video(job: Job, deleted: bool = False) -> Video:
    p = job.params
    size = f"{p['width']}x{p['height']}" if p.get("width") and p.get("height") else None
    meta = json.loads(job.metadata_json) if job.metadata_json else None
    if meta and meta.get("width") and meta.get("height"):
        size = f"{meta['width']}x{meta['height']}"
    error = ErrorDetail(code=job.error_code, message=job.error_message or "") if job.error_code else None
    return Video(
        id=job.id,
        model=job.model,
        status=job.status,
        progress=job.progress,
        created_at=int(job.created_at),
        started_at=int(job.started_at) if job.started_at else None,
        completed_at=int(job.finished_at) if job.finished_at else None,
        task=job.task,
        prompt=p["prompt"],
        seconds=job.seconds,
        fps=p["fps"],
        size=size,
        seed=p.get("seed"),
        remixed_from_video_id=job.source_id,
        cancel_requested=job.cancel_requested,
        has_draft=job.draft is not None,
        error=error,
        metadata=meta,
        deleted=deleted,
    )


def native_config(model_dir: Path) -> ModelConfig | None:
    """A native model's config, read without loading its weights; None for a diffusers directory or a
    hub id, whose size rules only a worker that loaded the model knows."""
    from cinegen.backends.loading import model_kind
    from cinegen.backends.native import read_config

    return read_config(model_dir) if model_kind(Path(model_dir)) == "native" else None


def create_app(settings: Settings) -> FastAPI:
    model_config = native_config(settings.model_dir or DEFAULT_MODEL_DIR)
    engine = make_engine(settings.url)
    sessions = make_sessionmaker(engine)
    queue = JobQueue(sessions, settings.lease_seconds, settings.max_attempts)
    storage = Storage(settings.storage)
    upload_limits = UploadLimits(
        settings.max_upload_bytes,
        settings.max_upload_pixels,
        settings.max_upload_frames,
        settings.max_upload_seconds,
        min_video_frames=1 + model_config.autoencoder.time_factor if model_config else 1,
    )

    app = FastAPI(
        title="cinegen",
        version="0.1.0",
        description="Video generation API. Authenticate with `Authorization: Bearer <key>` "
        "(`cinegen keys create --name NAME`).",
        responses=ERRORS,
    )
    app.state.settings, app.state.queue, app.state.storage = settings, queue, storage
    server_limits = {"seconds": settings.max_seconds, "fps": settings.max_fps, "steps": settings.max_steps}
    app.add_middleware(
        BodyLimitMiddleware,
        max_json=settings.max_body_bytes,
        max_multipart=settings.max_upload_bytes * len(FILE_ROLES) + settings.max_body_bytes,
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        )

    # ------------------------------------------------------------------ errors: always JSON {error: {code, message}}

    @app.exception_handler(ApiError)
    @app.exception_handler(QueueError)
    async def _api_error(_request: Request, exc: ApiError | QueueError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _error(exc.status, exc.code, exc.message, headers)

    @app.exception_handler(UploadTooLarge)
    async def _upload_too_large(_request: Request, exc: UploadTooLarge) -> JSONResponse:
        return _error(413, "request_too_large", str(exc))

    @app.exception_handler(UserError)
    async def _user_error(_request: Request, exc: UserError) -> JSONResponse:
        return _error(422, "invalid_input", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        # The follow-ups' JSON bodies are parsed by FastAPI; a body that is not a JSON object fails
        # there as a bare "JSON decode error" or "Field required" with no field named. Answer them
        # as POST /v1/videos answers its own.
        body_errors = [e for e in errors if tuple(e.get("loc", ()))[:1] == ("body",)]
        if any(e.get("type") == "json_invalid" for e in body_errors):
            return _error(400, "invalid_json", "the body is not valid JSON")
        if any(tuple(e.get("loc", ())) == ("body",) for e in body_errors):
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype not in ("", "application/json"):
                return _error(415, "unsupported_media_type", f"send application/json, not {ctype!r}")
            if not await request.body():
                return _error(422, "invalid_request", "the body is empty; send a JSON object, such as {}")
            return _error(422, "invalid_request", "the body must be a JSON object")
        body_model = FOLLOW_UP_BODIES.get(request.url.path.rsplit("/", 1)[-1])
        fields = tuple(body_model.model_fields) if body_model else ()
        return _error(422, "invalid_request", _validation_message(errors, fields, server_limits))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(_request: Request, exc: Exception) -> JSONResponse:
        return _error(500, "internal_error", f"internal error ({type(exc).__name__}); see the server log")

    # ------------------------------------------------------------------ auth

    bearer = HTTPBearer(auto_error=False, description="An API key from `cinegen keys create`.")

    def principal(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> auth.Principal:
        if not settings.auth:
            return auth.Principal(
                auth.LOCAL_OWNER, "local", settings.max_concurrent, settings.max_seconds_per_day
            )
        if creds is None:
            raise ApiError(401, "unauthorized", "send an API key as 'Authorization: Bearer <key>'")
        who = auth.lookup(sessions, creds.credentials)
        if who is None:
            raise ApiError(401, "unauthorized", "the API key is not valid")
        return who

    Who = Annotated[auth.Principal, Depends(principal)]
    VideoId = Annotated[str, PathParam(pattern=VIDEO_ID, description="A video id, video_<32 hex digits>.")]
    IdemKey = Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=200,
            description="A retried POST with the same key returns the first job instead of a new one.",
        ),
    ]

    def own_job(who: auth.Principal, video_id: str) -> Job:
        job = queue.get(who.id, video_id)
        if job is None:  # another key's job is as invisible as a missing one
            raise ApiError(404, "not_found", f"no video {video_id!r}")
        return job

    # ------------------------------------------------------------------ job creation

    def check_renderable(req: GenerateRequest, sizes: dict[str, tuple[int, int]]) -> Geometry | None:
        """The model's own rules for the output size (its size multiple, the pipeline's bounds),
        images of the video's aspect and a mask of the video's size, as the worker's pipeline would
        check them: refused before the job queues rather than failing on a worker. Returns the
        output's geometry, or None where only a worker that loaded the model knows it."""
        if model_config is None:
            return None
        source = next((sizes[role] for role in SOURCE_ROLES if role in sizes), None)
        try:
            g = config_geometry(model_config, req, source)
        except UserError as e:
            raise ApiError(422, "invalid_request", str(e)) from None
        for role in ("image", "last_image"):
            if role not in sizes:
                continue
            w, h = sizes[role]
            # The pipeline's test (inputs.check_image_aspect), whose message names CLI flags.
            if abs(math.log((w / h) / (g.width / g.height))) > ASPECT_TOLERANCE:
                raise ApiError(
                    422,
                    "invalid_input",
                    f"{role} is {w}x{h} (aspect {w / h:.3f}) but the video is {g.width}x{g.height} "
                    f"(aspect {g.width / g.height:.3f}); upload an image of the video's aspect, or leave "
                    "out size and aspect to follow the image",
                )
        if "mask" in sizes and "video" in sizes and sizes["mask"] != sizes["video"]:
            # inputs.read_mask's rule: a mask is one image or a video of exactly the source's size.
            (mw, mh), (vw, vh) = sizes["mask"], sizes["video"]
            raise ApiError(422, "invalid_input", f"mask is {mw}x{mh}; it must be {vw}x{vh} like the video")
        return g

    def check_source_lengths(req: GenerateRequest, media: dict[str, MediaInfo]) -> None:
        """Source videos long enough for the model as the task gets them (`pipeline.loaded_frames`):
        an upload checked at its own rate may resample to too few at the requested fps (6 frames at
        24 fps are 2 at 8 fps), and connect's second video to the first's rate."""
        if model_config is None:
            return
        need = 1 + model_config.autoencoder.time_factor
        for role in ("video", "video_b"):
            video = media.get(role)
            if video is None:
                continue
            first = media.get("video") if role == "video_b" else None
            kept = loaded_frames(req, video, first)
            if kept >= need:
                continue
            to = loaded_fps(req, first if first is not None else video)
            if not rates_differ(to, video.fps):  # short at its own rate: a follow-up's source
                message = (
                    f"{role}: {video.frames} frame(s); at least {need} (one latent frame after the first) "
                    "are needed"
                )
            else:
                rate = f"the first video's {to:g} fps" if first is not None else f"the requested {to:g} fps"
                message = resampled_too_short(role, video.frames, video.fps, kept, rate, need)
            raise ApiError(422, "invalid_input", message)

    def check_implied_length(frames: int, fps: float, time_factor: int) -> None:
        """A follow-up's length taken from a video this server made, held to `--max-seconds` in
        frames: a video made at the limit is a little longer than it (1 s at 8 fps makes 9 frames,
        1.125 s), for whole latent frames the server added, and a follow-up has no seconds to lower.
        It may have the frames the limit makes at its rate, no more."""
        allowed = frame_count(settings.max_seconds, fps, time_factor)
        if frames > allowed:
            raise ApiError(
                422,
                "invalid_request",
                over_server_limit("seconds", frames / fps, settings.max_seconds)
                + f": the video's {frames} frames at {fps:g} fps, where the limit makes {allowed}",
            )

    def check_pixels(width: int, height: int) -> None:
        if width * height > settings.max_pixels:
            raise ApiError(
                422,
                "invalid_request",
                f"{width}x{height} is over this server's limit of {settings.max_pixels} pixels per frame",
            )

    def build_job(
        who: auth.Principal,
        body: VideoCreate,
        inputs: dict[str, str],
        source_id: str | None = None,
        media: dict[str, MediaInfo] | None = None,
        implied_seconds: bool = False,
    ) -> NewJob:
        """The job a request makes; `media` says what its input files are (size, frames, rate) by role.
        `implied_seconds`: the seconds are a follow-up's, taken from its source and held to the limit
        in frames (`check_implied_length`), not sent by the user."""
        media = media or {}
        if body.model is not None and body.model != settings.model:
            raise ApiError(
                422, "invalid_request", f"model {body.model!r} does not exist; GET /v1/models lists them"
            )
        for field, limit in server_limits.items():
            value = getattr(body, field)
            if field == "seconds" and implied_seconds:
                continue
            if value is not None and value > limit:
                raise ApiError(422, "invalid_request", over_server_limit(field, value, limit))
        # The pipeline's aspect limits, checked now (a UserError answers 422) rather than on a worker.
        aspect = parse_aspect(body.aspect) if body.aspect is not None else None
        width = height = None
        if body.size is not None:
            width, height = (int(v) for v in body.size.split("x"))
        elif aspect is not None and body.resolution is not None:
            a, b = aspect
            width, height = (
                (body.resolution * a // b, body.resolution)
                if a >= b
                else (body.resolution, body.resolution * b // a)
            )
        if width is not None:
            check_pixels(width, height)
        for role in TASK_NEEDS_FILES.get(body.task, ()):
            if role not in inputs:
                raise ApiError(422, "invalid_request", f"task {body.task!r} needs an uploaded {role!r}")
        for role in inputs:
            if role not in TASK_TAKES_FILES[body.task]:
                raise ApiError(
                    422,
                    "invalid_request",
                    f"task {body.task!r} does not take {role!r}; it takes "
                    + ", ".join(TASK_TAKES_FILES[body.task]),
                )
        if not body.prompt.strip():
            raise ApiError(422, "invalid_request", "prompt is blank; describe the video to generate")
        params = {
            "prompt": body.prompt,
            "negative": body.negative_prompt or "",
            "width": width if body.size else None,
            "height": height if body.size else None,
            "aspect": body.aspect,
            "size": body.resolution,
            "seconds": body.seconds,
            "fps": body.fps,
            "steps": body.steps,
            "guidance": body.guidance,
            "sampler": body.sampler,
            "seed": body.seed if body.seed is not None else random.randint(0, 2**31 - 1),
            "task": body.task,
            "strength": body.strength,
            "backward": body.backward,
            "draft": bool(body.draft),
        }
        req = GenerateRequest(**params)
        check_source_lengths(req, media)
        g = check_renderable(req, {role: (m.width, m.height) for role, m in media.items()})
        if "mask" in media and "video" in media:
            check_mask_length(media["mask"], media["video"])  # a UserError: 422 invalid_input
        if width is None and g is not None:  # a short side alone follows the input's aspect
            check_pixels(g.width, g.height)
        # The job's length is what the model makes of the seconds asked for (whole latent frames:
        # 0.01 s is 5 frames; a loop of a video follows the video), as the CLI records the frames it
        # made; the request keeps the seconds.
        if g is not None:
            seconds = made_frames(req, g, model_config.autoencoder.time_factor, media.get("video")) / g.fps
        else:
            seconds = body.seconds
        return NewJob(settings.model, body.task, seconds, params, inputs, source_id)

    @contextlib.contextmanager
    def removed_on_error(inputs: dict[str, str]) -> Iterator[None]:
        """Stored inputs belong to the job a request makes: if it makes none, they go."""
        try:
            yield
        except BaseException:
            storage.remove(list(inputs.values()))
            raise

    def submit(who: auth.Principal, new: NewJob, idem: str | None, fingerprint: Any) -> JSONResponse:
        job, created = queue.submit(who, new, settings.max_queue, idem, request_hash(fingerprint))
        if not created:
            storage.remove(list(new.inputs.values()))  # the replay's own uploads are not needed
        return JSONResponse(to_video(job).model_dump(mode="json"), status_code=201 if created else 200)

    async def parse_create(
        request: Request,
    ) -> tuple[VideoCreate, dict[str, str], dict[str, str], dict[str, MediaInfo]]:
        """Body as VideoCreate, uploaded inputs as role → stored path, and the uploads' digests and
        what they are (size, frames, rate)."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "application/json":
            try:
                data = json.loads(await request.body())
            except (ValueError, RecursionError):  # RecursionError: nested too deep to parse
                raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
            if not isinstance(data, dict):
                raise ApiError(422, "invalid_request", "the body must be a JSON object")
            try:
                # strict: JSON has real numbers and booleans, so "2" for seconds is an error here
                return VideoCreate.model_validate(data, strict=True), {}, {}, {}
            except ValidationError as e:
                raise ApiError(
                    422,
                    "invalid_request",
                    _validation_message(e.errors(), tuple(VideoCreate.model_fields), server_limits),
                ) from None
        if ctype != "multipart/form-data":
            raise ApiError(415, "unsupported_media_type", "send application/json or multipart/form-data")
        try:
            form = await request.form(max_files=len(FILE_ROLES), max_fields=40, max_part_size=64 * 1024)
        except BodyTooLarge:
            raise
        except StarletteHTTPException as e:
            raise ApiError(400, "invalid_multipart", str(e.detail)) from None
        except Exception as e:  # malformed multipart bodies raise parser-specific errors
            raise ApiError(
                400, "invalid_multipart", f"the multipart body is malformed ({type(e).__name__})"
            ) from None
        fields: dict[str, str] = {}
        files: dict[str, UploadFile] = {}
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(form.close)
            for name, value in form.multi_items():
                if name in fields or name in files:
                    raise ApiError(422, "invalid_request", f"{name!r} is given twice")
                if isinstance(value, UploadFile):
                    if name not in FILE_ROLES:
                        raise ApiError(
                            422,
                            "invalid_request",
                            f"file field {name!r} is unknown; allowed: " + ", ".join(FILE_ROLES),
                        )
                    if not _plain_name(value.filename):
                        raise ApiError(
                            422,
                            "invalid_file_name",
                            f"{name}: file name {value.filename!r} must be a plain name",
                        )
                    files[name] = value
                elif name in FILE_ROLES:
                    raise ApiError(422, "invalid_request", f"{name!r} must be an uploaded file")
                else:
                    fields[name] = value
            try:
                body = VideoCreate.model_validate(fields)
            except ValidationError as e:
                raise ApiError(
                    422,
                    "invalid_request",
                    _validation_message(e.errors(), tuple(VideoCreate.model_fields), server_limits),
                ) from None
            inputs: dict[str, str] = {}
            digests: dict[str, str] = {}
            media: dict[str, MediaInfo] = {}
            try:
                for role, upload in files.items():
                    path, media[role] = await run_in_threadpool(
                        save_upload, upload.file, role, storage.uploads, upload_limits
                    )
                    inputs[role] = storage.relative(path)
                    digests[role] = await run_in_threadpool(_sha256, path)
            except BaseException:
                storage.remove(list(inputs.values()))
                raise
        return body, inputs, digests, media

    @app.post(
        "/v1/videos",
        response_model=Video,
        status_code=201,
        tags=["videos"],
        summary="Create a video job",
        openapi_extra=CREATE_BODY,
        responses={200: {"model": Video, "description": "An earlier request with this Idempotency-Key"}},
    )
    async def create_video(request: Request, who: Who, idempotency_key: IdemKey = None) -> JSONResponse:
        body, inputs, digests, media = await parse_create(request)
        with removed_on_error(inputs):
            new = build_job(who, body, inputs, media=media)
            return await run_in_threadpool(
                submit, who, new, idempotency_key, [body.model_dump(mode="json"), digests]
            )

    def follow_up(
        who: auth.Principal, video_id: str, task: str, body: Overrides, idem: str | None, **changes: Any
    ) -> JSONResponse:
        source = own_job(who, video_id)
        if source.status != "completed" or source.output is None:
            raise ApiError(
                409, "video_not_ready", f"video {video_id!r} is {source.status}; it must be completed"
            )
        p = source.params
        implied = False  # without the model's time factor, the seconds are held to the limit as sent
        fields = {
            "prompt": p["prompt"],
            "negative_prompt": p.get("negative") or None,
            "seconds": source.seconds,
            "fps": p["fps"],
            "steps": p.get("steps"),
            "guidance": p.get("guidance"),
            "sampler": p["sampler"],
            "draft": p.get("draft", False),
        }
        written = json.loads(source.metadata_json)  # what the worker wrote (it records it with every video)
        video = MediaInfo("video", written["width"], written["height"], written["frames"], written["fps"])
        if task in ("edit", "loop"):
            # A remix redraws the whole video and a loop loops all of it; an extension's or a
            # connection's job made only part of it. All of it, as far as they keep any source: asked
            # for more, a video longer than the server's limit on seconds was refused for seconds the
            # user never gave and cannot lower, though the job would keep no more than this.
            frames = video.frames
            if model_config is not None:
                frames = min(frames, most_kept_frames(model_config.autoencoder.time_factor))
                check_implied_length(frames, video.fps, model_config.autoencoder.time_factor)
                implied = True
            fields["seconds"] = frames / video.fps
        if p.get("width"):
            fields["size"] = f"{p['width']}x{p['height']}"
        elif p.get("aspect"):
            fields["aspect"], fields["resolution"] = p["aspect"], p.get("size")
        elif p.get("size"):
            fields["resolution"] = p["size"]
        fields.update({k: v for k, v in body.model_dump().items() if v is not None})
        fields.update(task=task, **changes)
        try:
            merged = VideoCreate.model_validate(fields)
        except ValidationError as e:
            raise ApiError(
                422, "invalid_request", _validation_message(e.errors(), (), server_limits)
            ) from None
        try:
            inputs = {"video": storage.copy_to_uploads(source.output)}
        except FileNotFoundError:
            raise ApiError(404, "not_found", f"the video of {video_id!r} is gone from storage") from None
        with removed_on_error(inputs):
            new = build_job(
                who, merged, inputs, source_id=source.id, media={"video": video}, implied_seconds=implied
            )
            return submit(who, new, idem, [task, video_id, body.model_dump(mode="json")])

    @app.post(
        "/v1/videos/{video_id}/remix",
        response_model=Video,
        status_code=201,
        tags=["videos"],
        summary="Re-render a finished video with a new prompt",
    )
    def remix_video(
        video_id: VideoId, body: RemixCreate, who: Who, idempotency_key: IdemKey = None
    ) -> JSONResponse:
        return follow_up(who, video_id, "edit", body, idempotency_key)

    @app.post(
        "/v1/videos/{video_id}/extend",
        response_model=Video,
        status_code=201,
        tags=["videos"],
        summary="Continue a finished video forward (or backward) in time",
    )
    def extend_video(
        video_id: VideoId, body: ExtendCreate, who: Who, idempotency_key: IdemKey = None
    ) -> JSONResponse:
        return follow_up(who, video_id, "extend", body, idempotency_key)

    @app.post(
        "/v1/videos/{video_id}/loop",
        response_model=Video,
        status_code=201,
        tags=["videos"],
        summary="Make a finished video into a seamless loop",
    )
    def loop_video(
        video_id: VideoId, body: LoopCreate, who: Who, idempotency_key: IdemKey = None
    ) -> JSONResponse:
        return follow_up(who, video_id, "loop", body, idempotency_key)

    # ------------------------------------------------------------------ reading, cancelling, deleting

    @app.get(
        "/v1/videos", response_model=VideoList, tags=["videos"], summary="List your videos, newest first"
    )
    def list_videos(
        who: Who,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        after: Annotated[
            str | None, Query(pattern=VIDEO_ID, description="Cursor: the last id of the previous page")
        ] = None,
        order: Annotated[Literal["asc", "desc"], Query()] = "desc",
    ) -> VideoList:
        rows, more = queue.list(who.id, limit, after, order)
        data = [to_video(j) for j in rows]
        return VideoList(
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            has_more=more,
        )

    @app.get(
        "/v1/videos/{video_id}",
        response_model=Video,
        tags=["videos"],
        summary="Status and progress of a video",
    )
    def get_video(video_id: VideoId, who: Who) -> Video:
        return to_video(own_job(who, video_id))

    @app.get(
        "/v1/videos/{video_id}/content",
        tags=["videos"],
        summary="Download the video (mp4), its thumbnail (png) or its draft (mp4)",
        response_class=FileResponse,
        responses={200: {"content": {"video/mp4": {}, "image/png": {}}, "description": "The file"}},
    )
    def video_content(
        video_id: VideoId,
        who: Who,
        variant: Annotated[Literal["video", "thumbnail", "draft"], Query()] = "video",
    ) -> FileResponse:
        job = own_job(who, video_id)
        rel = {"video": job.output, "thumbnail": job.thumbnail, "draft": job.draft}[variant]
        if rel is None or (variant != "draft" and job.status != "completed"):
            raise ApiError(
                409, "video_not_ready", f"video {video_id!r} has no {variant} yet (status {job.status})"
            )
        path = storage.absolute(rel)
        if not path.is_file():
            raise ApiError(404, "not_found", f"the {variant} of {video_id!r} is gone from storage")
        media = "image/png" if variant == "thumbnail" else "video/mp4"
        name = f"{video_id}{'.png' if variant == 'thumbnail' else '.mp4'}"
        return FileResponse(path, media_type=media, filename=name, content_disposition_type="inline")

    @app.delete(
        "/v1/videos/{video_id}",
        response_model=Video,
        tags=["videos"],
        summary="Cancel a queued or running job, or delete a finished video",
    )
    def delete_video(video_id: VideoId, who: Who) -> Video:
        what, job = queue.cancel_or_delete(who.id, video_id)
        if job is None:
            raise ApiError(404, "not_found", f"no video {video_id!r}")
        if what == "deleted":
            storage.remove([p for p in (job.output, job.thumbnail, job.draft) if p])
            storage.remove(list(job.inputs.values()))
        return to_video(job, deleted=what == "deleted")

    @app.get("/v1/models", response_model=ModelList, tags=["models"], summary="Models this server runs")
    def list_models(_who: Who) -> ModelList:
        return ModelList(data=[Model(id=settings.model, default=True, tasks=list(TASKS))])

    # ------------------------------------------------------------------ operations

    @app.get("/healthz", response_model=Health, tags=["operations"], summary="Liveness and queue state")
    def healthz() -> Health:
        return Health(status="ok", **queue.stats())

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        tags=["operations"],
        summary="Prometheus metrics",
        responses={200: {"content": {"text/plain": {}}}},
    )
    def metrics() -> PlainTextResponse:
        lines = []
        for name, value in queue.stats().items():
            lines += [f"# TYPE cinegen_{name} gauge", f"cinegen_{name} {value}"]
        return PlainTextResponse("\n".join(lines) + "\n")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    build_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build_openapi()
            schema["components"]["schemas"].update(_create_body_schemas())
        return app.openapi_schema

    app.openapi = openapi
    return app


def _plain_name(name: str | None) -> bool:
    """Whether a client's file name is a plain name. The name is never used (files get server-chosen
    names), but one that tries to walk the file system marks a hostile client: refuse outright."""
    if not name:
        return True
    return (
        len(name) <= 255
        and not any(c in name for c in "/\\\0:")
        and name not in (".", "..")
        and ".." not in name
    )


def _number(value: Any) -> float:
    """A value Pydantic found over a cap as a number (a form's fields arrive as text)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
