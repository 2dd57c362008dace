"""Uploaded images and videos: checked by decoding, bounded, stored under server-chosen names.

Nothing from the request (file name, content type) reaches the file system or decides how a
file is read: the kind is found from the bytes' signature, the demuxer is forced to that kind
(so ffmpeg never probes into playlist or concat formats that open other files or URLs), and
the file is decoded end to end within byte, pixel, frame and duration bounds before a job may
use it.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av
from PIL import Image

from cinegen.errors import UserError
from cinegen.media import MediaInfo, clip_rate, gif_frames_if_cut, header_rate

IMAGE_ROLES = ("image", "last_image")
VIDEO_ROLES = ("video", "video_b")
# A mask is one image for every frame or a video of them (the CLI's --mask mask.png|mask.mp4).
MASK_ROLES = ("mask",)
CHUNK = 1 << 20


class UploadTooLarge(UserError):
    """An upload over the byte limit: answered 413 like a body over its limit, not 422."""


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int
    max_pixels: int
    max_frames: int
    max_seconds: float
    # The fewest frames a video role may have: the pipeline's (one latent frame after the first,
    # 1 + the model's time factor), so that a too-short clip is refused at upload, not on a worker.
    min_video_frames: int = 1


def _sniff(head: bytes) -> tuple[str, str] | None:
    """(kind, suffix) from the first bytes of a file, or None if it is no format we accept."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", ".png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image", ".jpg"
    if head[4:8] == b"ftyp":
        return "video", ".mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video", ".webm"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "video", ".gif"
    return None


_DEMUXER = {".mp4": "mp4", ".webm": "matroska", ".gif": "gif"}
_PIL_FORMAT = {".png": "PNG", ".jpg": "JPEG"}


def save_upload(stream: BinaryIO, role: str, folder: Path, limits: UploadLimits) -> tuple[Path, MediaInfo]:
    """Copy an upload to `folder` under a fresh name, validate it, and return its path and what it
    is: its (first frame's) size, and a video's frames and rate, as `media.read_video` reads them.

    Raises UserError (and leaves nothing behind) if it is too big (UploadTooLarge), not a
    supported image or video, the wrong kind for `role`, or out of bounds.
    """
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".upload-{uuid.uuid4().hex}"
    try:
        size = 0
        with open(tmp, "wb") as out:
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if size > limits.max_bytes:
                    raise UploadTooLarge(f"{role}: the upload is larger than {limits.max_bytes} bytes")
                out.write(chunk)
        if size == 0:
            raise UserError(f"{role}: the upload is empty")
        with open(tmp, "rb") as f:
            found = _sniff(f.read(16))
        if found is None:
            raise UserError(f"{role}: not a PNG or JPEG image nor an mp4, webm or gif video")
        kind, suffix = found
        if role in IMAGE_ROLES and kind == "video":
            # A still image is a one-frame video, so a video role accepts images; not the reverse.
            raise UserError(f"{role}: expected an image, got a {suffix[1:]} video")
        info = _check_image(tmp, suffix, role, limits) if kind == "image" else _check_video(tmp, suffix, role, limits)
        if role in VIDEO_ROLES and info.frames < limits.min_video_frames:
            raise UserError(
                f"{role}: {info.frames} frame(s); at least {limits.min_video_frames} "
                "(one latent frame after the first) are needed"
            )
        final = folder / f"{uuid.uuid4().hex}{suffix}"
        os.replace(tmp, final)
        return final, info
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _check_pixels(role: str, width: int, height: int, limits: UploadLimits) -> None:
    if width < 1 or height < 1 or width * height > limits.max_pixels:
        raise UserError(
            f"{role}: {width}x{height} is out of bounds; at most {limits.max_pixels} pixels allowed"
        )


def _check_image(path: Path, suffix: str, role: str, limits: UploadLimits) -> MediaInfo:
    try:
        with Image.open(path, formats=[_PIL_FORMAT[suffix]]) as image:
            # The header's size is checked before any pixel is decoded (decompression bombs).
            _check_pixels(role, image.width, image.height, limits)
            image.load()
            return MediaInfo("image", image.width, image.height, frames=1, fps=1.0)  # read_video's still
    except UserError:
        raise
    except Exception as e:  # Pillow raises many types for corrupt files
        raise UserError(f"{role}: not a readable {suffix[1:]} image ({type(e).__name__})") from None


def _check_video(path: Path, suffix: str, role: str, limits: UploadLimits) -> MediaInfo:
    """The first frame's size, the number of frames and the rate."""
    # FFmpeg decodes a GIF cut short without an error, as a shorter clip; media.read_video refuses it,
    # so the worker would fail on a job the server took.
    if suffix == ".gif" and (whole := gif_frames_if_cut(path)) is not None:
        raise UserError(
            f"{role}: the GIF is cut short after {whole} whole frame(s): it lacks the trailer (byte 0x3B) "
            "that closes a whole GIF"
        )
    frames = 0
    first_size = (0, 0)
    times = []
    try:
        with av.open(str(path), format=_DEMUXER[suffix]) as container:
            if not container.streams.video:
                raise UserError(f"{role}: the file has no video stream")
            stream = container.streams.video[0]
            _check_pixels(role, stream.codec_context.width, stream.codec_context.height, limits)
            # media.read_video's rate (then media.clip_rate), which the worker's pipeline resamples from.
            fps = header_rate(stream)
            if container.duration is not None and container.duration / av.time_base > limits.max_seconds:
                raise UserError(f"{role}: longer than {limits.max_seconds:g} seconds")
            for frame in container.decode(stream):
                # Sizes may change mid-stream, and headers may lie about the frame count.
                _check_pixels(role, frame.width, frame.height, limits)
                if frames == 0:
                    first_size = (frame.width, frame.height)
                frames += 1
                times.append(frame.time)
                if frames > limits.max_frames:
                    raise UserError(f"{role}: more than {limits.max_frames} frames")
                if frame.time is not None and frame.time > limits.max_seconds:
                    raise UserError(f"{role}: longer than {limits.max_seconds:g} seconds")
    except UserError:
        raise
    except Exception as e:  # PyAV raises many types for corrupt files
        raise UserError(f"{role}: not a readable {suffix[1:]} video ({type(e).__name__})") from None
    if frames == 0:
        raise UserError(f"{role}: the file contains no decodable video frames")
    return MediaInfo("video", *first_size, frames=frames, fps=clip_rate(fps, times, suffix == ".gif"))
