"""Task inputs at the edge of the pipeline: read the user's images, videos, masks and
storyboards, check them, and fit them to the output size.

Everything here works on uint8 frames `(F, H, W, 3)` (numpy, as `cinegen.media` returns them)
and raises `UserError` with one line naming the file and what is allowed. Fitting says what it
did in `notes`, so a resize or crop is never silent.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from cinegen.errors import UserError
from cinegen.media import read_first_frame, read_video

ASPECT_TOLERANCE = 0.05  # an image may differ this much in aspect from the video (rounding to 16 px)
MAX_SHOTS = 50
# Levels a mask pixel's channels may differ by and still count as gray: H.264 / JPEG leave a few on
# a black-and-white mask, a colour differs by far more.
MASK_GRAY_TOLERANCE = 48


@dataclass
class Shot:
    prompt: str
    seconds: float


@dataclass
class Inputs:
    """Decoded task inputs, before fitting (sizes as the user gave them)."""

    image: np.ndarray | None = None  # (H, W, 3)
    last_image: np.ndarray | None = None
    video: np.ndarray | None = None  # (F, H, W, 3)
    video_fps: float | None = None
    video_b: np.ndarray | None = None
    mask: np.ndarray | None = None  # (F, H, W) bool, True = regenerate (white)
    notes: list[str] = field(default_factory=list)

    @property
    def source_size(self) -> tuple[int, int] | None:
        """(width, height) of the first given image or video: the output follows it by default."""
        for media in (self.video, self.image, self.last_image):
            if media is not None:
                return media.shape[-2], media.shape[-3]
        return None


def read_still(path: str, role: str, notes: list[str]) -> np.ndarray:
    """An image used as one frame; an animated GIF or PNG gives its first, with a note: the rest of
    the animation is dropped, which the user would not otherwise learn."""
    image, frames_in_file = read_first_frame(path)
    if frames_in_file > 1:
        notes.append(f"{role} {path!r} is animated ({frames_in_file} frames); its first frame is used")
    return image


def read_source_video(path: str, role: str, min_frames: int, max_frames: int) -> tuple[np.ndarray, float]:
    frames, fps = read_video(path, max_frames=max_frames)
    if len(frames) < min_frames:
        raise UserError(
            f"{role} {path!r} has {len(frames)} frame(s); at least {min_frames} "
            f"(one latent frame after the first) are needed"
        )
    return frames, fps


def resample_index(frames: int, fps: float, to_fps: float) -> np.ndarray:
    """Which of a clip's `frames` at `fps` to show at `to_fps` over the same time span (the nearest
    ones, dropped or repeated)."""
    count = 1 + math.floor((frames - 1) * to_fps / fps + 1e-6)
    # Ties go to the earlier frame: np.round's ties-to-even repeated frames unevenly (0 0 1 2 2 2 3 ...).
    nearest = np.floor(np.arange(count) * fps / to_fps + 0.5 - 1e-6).astype(int)
    return np.minimum(nearest, frames - 1)


def rates_differ(fps: float, other: float) -> bool:
    """Whether a clip at `other` fps is resampled to `fps` (more than 1% apart)."""
    return abs(fps / other - 1) > 0.01


def resampled_too_short(name: str, frames: int, fps: float, kept: int, to: str, min_frames: int) -> str:
    """The error for a source video long enough at its own rate but too short once resampled: its
    frames and rate, what they become at `to` (the rate, as the caller names it) and the minimum, said
    alike by the CLI (`load`) and by the server, which refuses such a job at submit."""
    return (
        f"{name}: {frames} frame(s) at {fps:g} fps resample to {kept} at {to}; at least {min_frames} "
        "(one latent frame after the first) are needed"
    )


def checked_resample_index(name: str, frames: int, fps: float, to_fps: float, to: str, min_frames: int) -> np.ndarray:
    """`resample_index` of a source video, refused in one line (`resampled_too_short`) when it leaves
    fewer than `min_frames`."""
    index = resample_index(frames, fps, to_fps)
    if len(index) < min_frames:
        raise UserError(resampled_too_short(name, frames, fps, len(index), to, min_frames))
    return index


def check_mask_frames(name: str, frames: int, video_frames: int, cut: bool = False) -> None:
    """A mask of `frames` frames fits a source read as `video_frames`: one image for every frame or
    a video of exactly its frames. `cut`: the source was cut to its first `video_frames`, so a longer
    mask is cut alike. Said alike by `read_mask` and by the server, which refuses such a job at submit."""
    if cut:
        frames = min(frames, video_frames)
    if frames not in (1, video_frames):
        count = f"more than {video_frames}" if frames > video_frames else frames
        raise UserError(
            f"{name} has {count} frames; it must be one image or {video_frames} frames like the video"
        )


def read_mask(path: str, like: np.ndarray, cut: bool = False) -> np.ndarray:
    """A black/white mask image or video of exactly the source's size: True where white (regenerate).
    `cut`: the source was cut to `like`'s length, so a longer mask is cut alike."""
    frames, _ = read_video(path, max_frames=len(like) + 1)  # one more: a longer mask is refused, not cut
    if cut:
        frames = frames[: len(like)]
    h, w = like.shape[1:3]
    if frames.shape[1:3] != (h, w):
        raise UserError(
            f"mask {path!r} is {frames.shape[2]}x{frames.shape[1]}; it must be {w}x{h} like the video"
        )
    check_mask_frames(f"mask {path!r}", len(frames), len(like), cut)
    # A coloured mask has no meaning the user could count on: its brightness decided, so a yellow
    # region was regenerated and a red one (mean 85) kept, or refused as "no white pixels".
    colored = np.ptp(frames, axis=-1) > MASK_GRAY_TOLERANCE
    if colored.any():
        f, y, x = np.unravel_index(np.argmax(colored), colored.shape)
        rgb = tuple(int(c) for c in frames[f, y, x])
        where = f"x={x}, y={y}" + (f" of frame {f}" if len(frames) > 1 else "")
        raise UserError(
            f"mask {path!r} has colored pixels (RGB {rgb} at {where}); it must be black and white: "
            "white is regenerated, black kept"
        )
    white = frames.mean(axis=-1) >= 128
    if len(white) == 1:
        white = np.repeat(white, len(like), axis=0)
    if not white.any():
        raise UserError(f"mask {path!r} has no white pixels: nothing to regenerate")
    return white


def read_storyboard(path: str | Path) -> list[Shot]:
    """A JSON list of shots `[{"prompt": "...", "seconds": 3}, ...]`; cuts between shots."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"storyboard {str(path)!r} does not exist")
    try:
        # utf-8-sig: an editor's byte-order mark (Windows Notepad) made a good file "not JSON".
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
        raise UserError(f"storyboard {str(path)!r} is not JSON") from None
    return parse_storyboard(data, str(path))


def parse_storyboard(data, where: str = "storyboard") -> list[Shot]:
    if isinstance(data, dict) and "shots" in data:
        data = data["shots"]
    if not isinstance(data, list) or not 1 <= len(data) <= MAX_SHOTS:
        raise UserError(
            f"{where} must be a list of 1..{MAX_SHOTS} shots like "
            '{"prompt": "a red ball moves right", "seconds": 3}'
        )
    shots = []
    for i, shot in enumerate(data):
        if isinstance(shot, Shot):
            shots.append(shot)
            continue
        ok = (
            isinstance(shot, dict)
            and set(shot) <= {"prompt", "seconds"}
            and isinstance(shot.get("prompt"), str)
        )
        seconds = shot.get("seconds", 2.0) if isinstance(shot, dict) else None
        is_number = isinstance(seconds, int | float) and not isinstance(seconds, bool)
        if not ok or not shot["prompt"].strip() or not is_number or not seconds > 0:
            raise UserError(
                f'{where} shot {i} must be {{"prompt": non-empty text, "seconds": > 0}}, got {shot!r}'
            )
        shots.append(Shot(shot["prompt"], float(seconds)))
    return shots


# ----------------------------------------------------------------------------- fitting


def fit_frames(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize to cover `width x height` keeping the aspect, then center-crop. (F, H, W, C) uint8 or bool."""
    h, w = frames.shape[1:3]
    if (w, h) == (width, height):
        return frames
    scale = max(width / w, height / h)
    rw, rh = max(width, round(w * scale)), max(height, round(h * scale))
    top, left = (rh - height) // 2, (rw - width) // 2
    is_bool = frames.dtype == bool
    out = []
    for f in frames:
        img = Image.fromarray(f.astype(np.uint8) * 255 if is_bool else f)
        resample = Image.NEAREST if is_bool else Image.BICUBIC
        img = img.resize((rw, rh), resample).crop((left, top, left + width, top + height))
        out.append(np.asarray(img) > 127 if is_bool else np.asarray(img))
    return np.stack(out)


def fit_note(role: str, frames: np.ndarray, width: int, height: int) -> str | None:
    h, w = frames.shape[1:3]
    if (w, h) == (width, height):
        return None
    cropped = abs(w / h - width / height) > 1e-3
    return f"{role} {w}x{h} resized{' and center-cropped' if cropped else ''} to {width}x{height}"


def check_image_aspect(role: str, path: str, image: np.ndarray, width: int, height: int) -> None:
    """An image for image→video must have the video's aspect (up to rounding to the size multiple)."""
    h, w = image.shape[:2]
    if abs(np.log((w / h) / (width / height))) > ASPECT_TOLERANCE:
        raise UserError(
            f"{role} {path!r} is {w}x{h} (aspect {w / h:.3f}) but the video is {width}x{height} "
            f"(aspect {width / height:.3f}); give an image of the same aspect or leave out "
            "--width/--height/--aspect"
        )


def load(req, min_frames: int, max_frames: int) -> Inputs:
    """Read every file the request names (checked by decoding, bounded in size)."""
    inputs = Inputs()
    if req.image:
        inputs.image = read_still(req.image, "image", inputs.notes)
    if req.last_image:
        inputs.last_image = read_still(req.last_image, "last image", inputs.notes)
    if req.video:
        inputs.video, inputs.video_fps = read_source_video(req.video, "video", min_frames, max_frames)
    if req.mask:
        if inputs.video is None:
            raise UserError("--mask needs a source video to edit")
        inputs.mask = read_mask(req.mask, inputs.video, cut=len(inputs.video) >= max_frames)
    if inputs.video is not None and req.fps is not None and rates_differ(req.fps, inputs.video_fps):
        # Taken frame for frame, the clip would play faster or slower than it was filmed.
        index = checked_resample_index(
            f"video {req.video!r}", len(inputs.video), inputs.video_fps, req.fps, f"{req.fps:g} fps", min_frames
        )
        inputs.video = inputs.video[index]
        if inputs.mask is not None:
            inputs.mask = inputs.mask[index]
        inputs.notes.append(f"video {inputs.video_fps:g} fps resampled to {req.fps:g} fps ({len(inputs.video)} frames)")
        inputs.video_fps = req.fps
    if req.video_b:
        inputs.video_b, fps_b = read_source_video(req.video_b, "second video", min_frames, max_frames)
        # Played at the first's rate, it ran slow or fast. (Arguments as for the first: the rate resampled
        # to, then the clip's; the test is not symmetric, and the server's `pipeline.loaded_frames` repeats it.)
        if rates_differ(inputs.video_fps, fps_b):
            index = checked_resample_index(
                f"second video {req.video_b!r}", len(inputs.video_b), fps_b, inputs.video_fps,
                f"the first's {inputs.video_fps:g} fps", min_frames,
            )
            inputs.video_b = inputs.video_b[index]
            inputs.notes.append(
                f"second video {fps_b:g} fps resampled to the first's {inputs.video_fps:g} fps "
                f"({len(inputs.video_b)} frames)"
            )
    return inputs
