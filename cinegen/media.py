"""Media at the edge of the system: read and write mp4, webm, gif, png and jpg.

Inside cinegen, video is float in [-1, 1]; here, and only here, it is uint8 `[T, H, W, 3]`.
Every writer goes through a temporary file in the target folder and an atomic rename, so an
interrupted run never leaves a half-written output. Readers decode untrusted input with
bounds (bytes, pixels, frames) and turn any decoding failure into a one-line `UserError`.
PyAV is imported by the functions that use it, so code that only imports this module (the
trainer and the benchmarks, through the pipeline) runs on machines without it.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import re
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from cinegen.errors import UserError

VIDEO_SUFFIXES = (".mp4", ".webm", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
OUTPUT_SUFFIXES = VIDEO_SUFFIXES + IMAGE_SUFFIXES
# Inputs read by Pillow as one still image. TIFF is read, not written: FFmpeg's TIFF decoder took a
# floating-point or 32-bit TIFF mask for a 0x0 picture.
STILL_SUFFIXES = IMAGE_SUFFIXES + (".tif", ".tiff")


@dataclass(frozen=True)
class Limits:
    """Bounds on decoded input, so a hostile file cannot exhaust memory (zip-bomb style)."""

    max_bytes: int = 512 * 1024 * 1024
    max_pixels: int = 1920 * 1920
    max_frames: int = 60 * 60 * 4  # four minutes at 60 fps


DEFAULT_LIMITS = Limits()
# What shows through transparent pixels of an input (a cut-out PNG, a transparent GIF): black, as
# premultiplied alpha has it. The colour a file keeps under alpha 0 is whatever the editor left
# there (the cut-out's own colour, the layer below, noise) and no viewer shows it; dropping the alpha
# put it into the conditioning frame. Black is also a background the shipped model knows (the
# world's darkest tone), and the transparent part of a mask reads as black: kept, not regenerated.
TRANSPARENT_BACKGROUND = (0, 0, 0)


@dataclass(frozen=True)
class MediaInfo:
    kind: str  # "video" or "image"
    width: int
    height: int
    frames: int
    fps: float


# ----------------------------------------------------------------------------- writing


def check_output_path(path: str | os.PathLike) -> Path:
    """Validate an output path before any work is done: known suffix, not a folder, writable folder."""
    path = Path(path)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise UserError(f"output {str(path)!r} has suffix {path.suffix!r}; allowed: {', '.join(OUTPUT_SUFFIXES)}")
    if path.is_dir():
        raise UserError(f"output {str(path)!r} is a folder; give a file name such as {str(path / 'out.mp4')!r}")
    folder = path.parent
    if not folder.is_dir():
        raise UserError(f"output folder {str(folder)!r} does not exist")
    # Create (and remove) the temporary file the writer will use: os.access says yes to root
    # everywhere, /proc included, where only the write itself fails.
    try:
        os.unlink(_temp_beside(path))
    except OSError:
        raise UserError(f"output folder {str(folder)!r} is not writable") from None
    return path


def _temp_beside(path: Path) -> Path:
    """A new empty hidden file in `path`'s folder (`.out.x1y2.mp4`), for an atomic rename over `path`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def _atomic_target(path: Path):
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds."""
    tmp = _temp_beside(path)
    try:
        yield tmp
        # mkstemp makes the file private (0600); outputs get the usual permissions, as `open` would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _check_frames(frames: np.ndarray) -> np.ndarray:
    if frames.ndim == 3:
        frames = frames[None]
    assert frames.ndim == 4 and frames.shape[-1] == 3, f"frames must be [T, H, W, 3], got {frames.shape}"
    assert frames.dtype == np.uint8, f"frames must be uint8, got {frames.dtype}"
    return np.ascontiguousarray(frames)


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float, metadata: dict | None = None) -> Path:
    """Write uint8 frames `[T, H, W, 3]` to `path`; the format follows the suffix.

    mp4 is H.264 yuv420p (plays in browsers and common players); webm is VP9; gif loops;
    png/jpg write one image, or numbered frames `name_0000.png ...` when T > 1.
    `metadata` (JSON-able) goes into the container's comment tag where the format has one.
    """
    path = check_output_path(path)
    frames = _check_frames(frames)
    suffix = path.suffix.lower()
    comment = json.dumps(metadata, sort_keys=True) if metadata else None
    if suffix in IMAGE_SUFFIXES:
        return _write_images(path, frames, comment)
    with _atomic_target(path) as tmp:
        if suffix == ".gif":
            _write_gif(tmp, frames, fps, comment)
        else:
            _write_av(tmp, frames, fps, suffix, comment)
    return path


def _write_gif(path: Path, frames: np.ndarray, fps: float, comment: str | None) -> None:
    # Frame by frame through Pillow's GIF helpers: its `save_all` drops a frame identical to the one
    # before (adding its time to that one), so a still stretch read back as fewer, longer frames (a
    # still 33-frame world clip as 1 frame at 0.5 fps). GIF delays are whole hundredths of a second,
    # and browsers play delays under 2 as 10: each frame ends at its own time rounded, so the clip
    # keeps its length, at 50 fps at most.
    from PIL import GifImagePlugin

    images = [Image.fromarray(f).convert("P", palette=Image.Palette.ADAPTIVE) for f in frames]
    ends = [round(100 * (i + 1) / min(fps, 50)) for i in range(len(frames))]
    header, _ = GifImagePlugin.getheader(images[0], info={"loop": 0, "comment": comment or ""})
    with open(path, "wb") as fp:
        fp.writelines(header)
        for image, start, end in zip(images, [0, *ends], ends):
            delay_ms = 10 * (end - start)
            fp.writelines(GifImagePlugin.getdata(image, duration=delay_ms, include_color_table=True))
        fp.write(b";")


def _write_av(path: Path, frames: np.ndarray, fps: float, suffix: str, comment: str | None) -> None:
    # yuv420p needs even sizes; pad by edge replication rather than cropping content away.
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    rate = Fraction(fps).limit_denominator(1001)
    fmt = "mp4" if suffix == ".mp4" else "webm"
    import av

    # faststart: the index (moov) before the frames, so a browser starts playing before the whole file is in.
    options = {"movflags": "+faststart"} if fmt == "mp4" else {}
    with av.open(str(path), mode="w", format=fmt, container_options=options) as container:
        if comment:
            container.metadata["comment"] = comment
        if suffix == ".mp4":
            stream = container.add_stream("libx264", rate=rate)
            # CRF 12: our flat-colour content must survive encoding for the evaluator's pixel checks.
            # No lookahead (nor the macroblock tree it feeds): with it x264 gave 2-8 different files
            # in 100-300 encodes of the same frames, even on one thread, so two same-seed jobs could
            # play differently; without it, 1 in 600. Files grow by about a fifth.
            stream.options = {"crf": "12", "preset": "fast", "x264-params": "rc-lookahead=0:mbtree=0"}
        else:
            stream = container.add_stream("libvpx-vp9", rate=rate)
            stream.options = {"crf": "20", "b:v": "0"}
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_images(path: Path, frames: np.ndarray, comment: str | None) -> Path:
    """One image at `path`, or numbered frames `name_0000.png ...`: a set that is whole or not there.
    Every frame goes to a temporary file first and all are renamed only once all are written; then
    the numbered frames of an earlier, longer run (or all of them, for one image) are removed, so the
    folder holds exactly the frames the sidecar describes."""
    targets = [path] if len(frames) == 1 else [path.with_name(f"{path.stem}_{i:04d}{path.suffix}") for i in range(len(frames))]
    with contextlib.ExitStack() as stack:
        for target, frame in zip(targets, frames, strict=True):
            tmp = stack.enter_context(_atomic_target(target))
            image = Image.fromarray(frame)
            if target.suffix.lower() == ".png" and comment:
                from PIL.PngImagePlugin import PngInfo

                info = PngInfo()
                info.add_text("cinegen", comment)
                image.save(tmp, format="PNG", pnginfo=info)
            else:
                image.save(tmp, format="PNG" if target.suffix.lower() == ".png" else "JPEG", quality=95)
    numbered = re.compile(rf"{re.escape(path.stem)}_\d{{4,}}{re.escape(path.suffix)}")
    written = {target.name for target in targets}
    for stale in path.parent.iterdir():
        if numbered.fullmatch(stale.name) and stale.name not in written and stale.is_file():
            stale.unlink(missing_ok=True)
    return targets[0]


def write_sidecar(path: str | os.PathLike, record: dict) -> Path:
    """Write the JSON record of how an output was made, next to it (`out.mp4` → `out.json`)."""
    target = Path(path).with_suffix(".json")
    with _atomic_target(target) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return target


# ----------------------------------------------------------------------------- reading


def _check_input_file(path: str | os.PathLike, limits: Limits) -> Path:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"input file {str(path)!r} does not exist")
    size = path.stat().st_size
    if size == 0:
        raise UserError(f"input file {str(path)!r} is empty")
    if size > limits.max_bytes:
        raise UserError(f"input file {str(path)!r} is {size} bytes; at most {limits.max_bytes} allowed")
    return path


def _check_pixels(path: Path, width: int, height: int, limits: Limits) -> None:
    if width < 1 or height < 1 or width * height > limits.max_pixels:
        raise UserError(f"{str(path)!r} is {width}x{height}; at most {limits.max_pixels} pixels allowed")


def _flatten(rgba: np.ndarray) -> np.ndarray:
    """uint8 `[..., 4]` → `[..., 3]` composited onto TRANSPARENT_BACKGROUND (alpha 255 keeps a pixel as it is)."""
    alpha = rgba[..., 3:].astype(np.uint32)
    background = np.array(TRANSPARENT_BACKGROUND, np.uint32)
    return ((rgba[..., :3] * alpha + background * (255 - alpha) + 127) // 255).astype(np.uint8)


def _gray_to_8_bits(path: Path, image: Image.Image) -> np.ndarray:
    """uint8 `[H, W]` of a 16-bit, 32-bit integer or floating-point grayscale image (Pillow modes
    I;16*, I, F). convert("RGB") clips these at 255: a 16-bit white (65535) stayed white only by
    luck, its grays came out white, and a float image's 0..1 came out black (1.0 as level 1)."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        # A float image's brightness is 0..1 (as float TIFFs from scientific and HDR tools keep it).
        # One holding other values (0..255, or HDR above 1) has no scale we could be sure of.
        low, high = float(values.min()), float(values.max())  # NaN if any is NaN
        if not 0 <= low <= high <= 1:
            # An overflowed HDR pixel is infinite, not "not a number".
            found = ("values that are not numbers" if np.isnan(low) else "infinite values" if np.isinf(values).any()
                     else f"values from {low:g} to {high:g}")
            raise UserError(f"{str(path)!r} is a floating-point image with {found}; allowed: brightness "
                            "0..1 (save it as an 8- or 16-bit image otherwise)")
        scale = 255.0
    else:
        # 16-bit (PNG, TIFF), or a 32-bit integer TIFF holding 16-bit values as Pillow opens either.
        if values.min() < 0 or values.max() > 65535:
            raise UserError(f"{str(path)!r} is an integer image with values from {values.min():g} to "
                            f"{values.max():g}; allowed: 0..65535 (16 bits)")
        scale = 255 / 65535
    return (values * scale).round().clip(0, 255).astype(np.uint8)


def read_image(path: str | os.PathLike, limits: Limits = DEFAULT_LIMITS) -> np.ndarray:
    """Decode an image file to uint8 `[H, W, 3]` (checked by decoding, not by its name); transparent
    pixels show TRANSPARENT_BACKGROUND. An animated GIF or PNG gives its first frame."""
    return read_first_frame(path, limits)[0]


def read_first_frame(path: str | os.PathLike, limits: Limits = DEFAULT_LIMITS) -> tuple[np.ndarray, int]:
    """`read_image`'s picture, and how many frames the file holds: more than 1 for an animated GIF
    or PNG, whose first frame the picture is, so a caller can say that the rest went unused."""
    path = _check_input_file(path, limits)
    try:
        with Image.open(path) as image:
            _check_pixels(path, image.width, image.height, limits)
            if image.format == "GIF":  # an --image GIF cut short gave its first frame as if whole
                _check_gif_whole(path)
            frames_in_file = getattr(image, "n_frames", 1)  # counted from frame headers; seeks back to frame 0
            # A camera's JPEG is stored as the sensor saw it, with an EXIF tag saying how to turn it:
            # a portrait photo came in on its side.
            image = ImageOps.exif_transpose(image)
            if image.mode.startswith("I;16") or image.mode == "I" or image.mode == "F":
                return np.repeat(_gray_to_8_bits(path, image)[..., None], 3, axis=-1), frames_in_file
            # An alpha channel, or a palette or colour key with a transparent entry (PNG tRNS, GIF).
            if image.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info:
                return _flatten(np.asarray(image.convert("RGBA"))), frames_in_file
            return np.asarray(image.convert("RGB")), frames_in_file
    except UserError:
        raise
    except Exception as e:  # Pillow raises many types for corrupt files
        raise UserError(f"{str(path)!r} is not a readable image ({type(e).__name__})") from None


def header_rate(stream) -> float:
    """A PyAV video stream's frame rate as its headers give it (8 where they give none)."""
    return float(stream.average_rate or stream.guessed_rate or 8)


def clip_rate(header_rate: float, times: list[float | None], gif: bool) -> float:
    """A decoded clip's frame rate: its header's; for a GIF the mean over its frames' `times`. A GIF's
    delays are whole hundredths, uneven at most rates (8 fps: 12, 13, 12, ...), and the header's rate
    is its first delay's: the mean over the clip is the rate it was made at."""
    span = times[-1] - times[0] if len(times) > 1 and None not in times else 0.0
    return (len(times) - 1) / span if gif and span > 0 else header_rate


def read_video(
    path: str | os.PathLike, *, max_frames: int | None = None, limits: Limits = DEFAULT_LIMITS
) -> tuple[np.ndarray, float]:
    """Decode a video (or a still image, as one frame) to uint8 `[T, H, W, 3]` and its fps."""
    path = _check_input_file(path, limits)
    if path.suffix.lower() in STILL_SUFFIXES:
        image, frames_in_file = read_first_frame(path, limits)
        if frames_in_file > 1:  # as one frame, an animated PNG mask would hold its first frame all clip long
            raise UserError(f"{str(path)!r} is an animated image ({frames_in_file} frames); as a video or mask "
                            f"give it as {', '.join(VIDEO_SUFFIXES)}, or give one still image")
        return image[None], 1.0
    cap = limits.max_frames if max_frames is None else min(max_frames, limits.max_frames)
    frames: list[np.ndarray] = []
    decoding = False
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UserError(f"{str(path)!r} has no video stream")
            stream = container.streams.video[0]
            _check_pixels(path, stream.codec_context.width, stream.codec_context.height, limits)
            if container.format.name == "gif":
                _check_gif_whole(path)
            fps = header_rate(stream)
            declared = stream.frames  # read while open: PyAV 18.1.1 refuses a closed container's streams
            times = []
            decoding = True  # the headers are sound: what fails from here on is a damaged frame
            for frame in container.decode(stream):
                _check_pixels(path, frame.width, frame.height, limits)
                if frames and (frame.height, frame.width) != frames[0].shape[:2]:
                    # A stream may change size midway (joined clips): the frames then do not stack.
                    raise UserError(
                        f"{str(path)!r} changes frame size at frame {len(frames)}, from "
                        f"{frames[0].shape[1]}x{frames[0].shape[0]} to {frame.width}x{frame.height}; "
                        "give a video of one frame size"
                    )
                if any(component.is_alpha for component in frame.format.components):  # a transparent GIF
                    frames.append(_flatten(frame.to_ndarray(format="rgba", threads=1)))
                else:
                    # One thread: FFmpeg's slice threads for the conversion hung in forked
                    # DataLoader workers under PyAV 18.1.1, and the frames are small.
                    frames.append(frame.to_ndarray(format="rgb24", threads=1))
                times.append(frame.time)
                if len(frames) >= cap:
                    break
            else:
                if frames:
                    _check_whole(path, stream, times[0], _frame_end(frame, fps), len(frames), fps)
            fps = clip_rate(fps, times, container.format.name == "gif")
    except UserError:
        raise
    except Exception as e:  # PyAV raises many types for corrupt files
        if decoding:  # a file cut short or overwritten partway: its header passed `check_video`
            detail = getattr(e, "strerror", None)
            raise UserError(f"{str(path)!r} is damaged at frame {len(frames)}{_of_declared(declared)}: it does not "
                            f"decode ({type(e).__name__}{': ' + detail if detail else ''})") from None
        raise UserError(f"{str(path)!r} is not a readable video ({type(e).__name__})") from None
    if not frames:
        raise UserError(f"{str(path)!r} contains no video frames")
    return np.stack(frames), fps


def gif_frames_if_cut(path: str | os.PathLike) -> int | None:
    """How many whole frames a GIF holds if it ends before its trailer (the byte 0x3B that closes every
    GIF): a file cut short, at a frame's end or partway through one. None for a whole GIF, and for a
    file that is not one (or too short for its own header: the decoders refuse that).

    FFmpeg and Pillow both stop at the end of the data without an error, so a GIF cut short loaded as
    a shorter clip (its last frame partly drawn when cut inside it), where a cut mp4 or WebM is refused.
    The blocks are walked by their lengths, without decoding. Bytes after the trailer are ignored, and
    an unknown block label is skipped a byte at a time, as Pillow reads it."""
    with open(path, "rb") as fp, mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if len(data) < 13 or data[:6] not in (b"GIF87a", b"GIF89a"):
            return None
        at = 13  # header (6 bytes), logical screen descriptor (7)
        if data[10] & 0x80:  # a global colour table
            at += 3 << ((data[10] & 7) + 1)
        frames = 0
        while at < len(data):
            label = data[at]
            at += 1
            if label == 0x3B:  # the trailer: the file is whole
                return None
            if label == 0x21:  # an extension: its type, then data sub-blocks
                at += 1
            elif label == 0x2C:  # a frame: descriptor (9 bytes), local colour table, LZW code size, sub-blocks
                if at + 9 > len(data):
                    break
                if data[at + 8] & 0x80:
                    at += 3 << ((data[at + 8] & 7) + 1)
                at += 10
            else:
                continue
            while at < len(data) and data[at]:  # sub-blocks: a length of 1-255 and that many bytes; 0 ends them
                at += 1 + data[at]
            if at >= len(data):
                break
            at += 1
            frames += label == 0x2C
        return frames


def _check_gif_whole(path: Path) -> None:
    frames = gif_frames_if_cut(path)
    if frames is not None:
        raise UserError(f"{str(path)!r} is damaged at frame {frames}: it ends after {frames} whole frame(s), "
                        "without the trailer (byte 0x3B) that closes a whole GIF (a file cut short)")


def _of_declared(frames: int) -> str:
    return f" of the {frames} its header declares" if frames else ""


def _frame_end(frame, fps: float) -> float | None:
    """When `frame` stops showing, in seconds: its own duration where the container keeps one."""
    if frame.time is None:
        return None
    return frame.time + (float(frame.duration * frame.time_base) if frame.duration else 1 / fps)


def _declared_seconds(stream) -> float | None:
    """How long the video stream's header says it is: mp4's track duration, or the DURATION tag
    Matroska and WebM keep per stream; None where there is none. (A GIF's is counted from the
    frames that are there: a cut GIF is found by its missing trailer, `gif_frames_if_cut`.)"""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    match = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d+)?)", stream.metadata.get("DURATION", ""))
    return int(match[1]) * 3600 + int(match[2]) * 60 + float(match[3]) if match else None


def _check_whole(path: Path, stream, start: float | None, end: float | None, frames: int, fps: float) -> None:
    """A `UserError` if the frames stopped well before the length the header declares. A WebM cut
    short decodes to its end without an error, and was a shorter clip; the margin of 3 frames
    covers frames timed unevenly (a rate that is an average) and a first frame shown late."""
    declared = _declared_seconds(stream)
    if declared is None or start is None or end is None:
        return
    if declared - (end - start) > 3 / fps:
        raise UserError(f"{str(path)!r} is damaged at frame {frames}{_of_declared(stream.frames)}: its frames stop at "
                        f"{end - start:.2f} s of the {declared:.2f} s its header declares (a file cut short or "
                        "overwritten partway)")


def check_video(path: str | os.PathLike, limits: Limits = DEFAULT_LIMITS) -> None:
    """A one-line `UserError`, as from `read_video`, for a file it could not open, found from the
    container's and the first video stream's headers alone: cheap enough for every clip of a
    training set before a run starts, where decoding them all would take as long as an epoch.
    A file whose headers are sound but whose frames are damaged still fails when read, with
    "damaged at frame N"."""
    path = _check_input_file(path, limits)
    try:
        if path.suffix.lower() in STILL_SUFFIXES:
            with Image.open(path) as image:  # reads the header; the pixels load on first use
                _check_pixels(path, image.width, image.height, limits)
            return
        import av

        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UserError(f"{str(path)!r} has no video stream")
            codec = container.streams.video[0].codec_context
            _check_pixels(path, codec.width, codec.height, limits)
    except UserError:
        raise
    except Exception as e:  # PyAV and Pillow raise many types for corrupt files
        kind = "image" if path.suffix.lower() in STILL_SUFFIXES else "video"
        detail = getattr(e, "strerror", None)  # PyAV's reason, e.g. "Invalid data found when processing input"
        raise UserError(f"{str(path)!r} is not a readable {kind} ({type(e).__name__}"
                        f"{': ' + detail if detail else ''})") from None


def read_metadata(path: str | os.PathLike) -> dict:
    """The JSON record cinegen stored in an output's container comment, or a png's text (empty if none)."""
    path = Path(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        with Image.open(path) as image:
            comment = image.info.get("cinegen")
        return json.loads(comment) if comment else {}
    import av

    with av.open(str(path)) as container:
        # Matroska (webm) keeps tag names upper case: the "comment" written reads back as "COMMENT".
        comment = {k.lower(): v for k, v in container.metadata.items()}.get("comment")
    return json.loads(comment) if comment else {}


def probe_media(path: str | os.PathLike, limits: Limits = DEFAULT_LIMITS) -> MediaInfo:
    """Size, frame count and fps of an image or video, found by decoding it."""
    frames, fps = read_video(path, limits=limits)
    kind = "image" if Path(path).suffix.lower() in STILL_SUFFIXES else "video"
    return MediaInfo(kind=kind, width=frames.shape[2], height=frames.shape[1], frames=len(frames), fps=fps)
