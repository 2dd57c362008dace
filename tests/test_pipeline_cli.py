import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from cinegen.cli import main
from cinegen.errors import UserError
from cinegen.media import read_metadata, read_video, write_video
from cinegen.pipeline import GenerateRequest, Pipeline, to_uint8


@pytest.fixture(scope="module")
def pipe(tiny_model_dir):
    return Pipeline.load(tiny_model_dir, device="cpu")


def test_same_seed_same_frames_different_seed_differs(pipe):
    req = GenerateRequest("a red ball moves right", width=32, height=32, frames=5, seed=1)
    a, b = pipe.run(req).frames, pipe.run(req).frames
    assert a.shape == (5, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    c = pipe.run(GenerateRequest("a red ball moves right", width=32, height=32, frames=5, seed=2)).frames
    assert not np.array_equal(a, c)


def test_the_same_frames_make_the_same_mp4(tmp_path):
    """With x264's lookahead, 40 encodes of this clip (the server test's same-seed job) gave about
    4 different files, so two same-seed jobs could play differently."""
    from cinegen.serve.testing import make_test_model

    model = Pipeline.load(make_test_model(tmp_path / "model"), device="cpu")
    request = GenerateRequest("a red ball moves right on a white background", width=64, height=64, frames=9,
                              steps=2, seed=3)
    frames = model.run(request).frames
    written = set()
    for i in range(40):
        write_video(tmp_path / f"{i}.mp4", frames, 8.0, {"prompt": "a red ball"})
        written.add((tmp_path / f"{i}.mp4").read_bytes())
    assert len(written) == 1


def test_a_gif_keeps_still_frames_and_its_rate(tmp_path):
    """Pillow's save_all dropped a frame identical to the one before: a still 2 s world clip read back as
    one frame at 0.5 fps. GIF delays are whole hundredths (8 fps: 12, 13, 12, ...)."""
    frames = np.full((17, 16, 16, 3), 90, np.uint8)
    write_video(tmp_path / "still.gif", frames, 8.0)
    read, fps = read_video(tmp_path / "still.gif")
    assert np.array_equal(read, frames) and fps == 8.0


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".gif", ".png"])
def test_every_format_keeps_its_record(tmp_path, suffix):
    """webm's tag read back as "COMMENT" and png's text was not read: both gave {}."""
    record = {"prompt": "a red ball", "seed": 3}
    path = write_video(tmp_path / f"clip{suffix}", np.zeros((5, 16, 16, 3), np.uint8), 8.0, record)
    assert read_metadata(path) == record


@pytest.mark.parametrize(("name", "dtype"), [("gray16.png", np.uint16), ("gray32.tif", np.int32)])
def test_a_16_bit_grayscale_image_reads_as_its_8_bit_gray(tmp_path, name, dtype):
    """Pillow's convert("RGB") clips 16-bit gray at 255: such a first frame read as all white. A
    32-bit integer TIFF (Pillow mode I) holds 16-bit values as well."""
    from PIL import Image

    from cinegen.media import read_image

    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(gray.astype(dtype) * 257).save(tmp_path / name)
    assert np.array_equal(read_image(tmp_path / name), np.repeat(gray[..., None], 3, axis=-1))


def test_a_float_tiff_reads_its_0_to_1_brightness(tmp_path):
    """convert("RGB") took a float image's 0..1 as levels 0..1 of 255: a white float TIFF read as
    black. As a mask (read_video), FFmpeg's TIFF decoder made it a 0x0 picture."""
    from PIL import Image

    from cinegen.media import read_image

    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray((gray / 255).astype(np.float32), mode="F").save(tmp_path / "float.tif")
    expected = np.repeat(gray[..., None], 3, axis=-1)
    assert np.array_equal(read_image(tmp_path / "float.tif"), expected)
    assert np.array_equal(read_video(tmp_path / "float.tif")[0], expected[None])


@pytest.mark.parametrize(("values", "message"), [
    (np.full((8, 8), 255.0, np.float32), "a floating-point image with values from 255 to 255; allowed: brightness 0..1"),
    (np.full((8, 8), np.nan, np.float32), "a floating-point image with values that are not numbers"),
    (np.full((8, 8), np.inf, np.float32), "a floating-point image with infinite values; allowed"),
    (np.full((8, 8), 70000, np.int32), "an integer image with values from 70000 to 70000; allowed: 0..65535"),
])
def test_an_image_whose_brightness_scale_is_unknown_is_refused(tmp_path, values, message):
    """A float TIFF of 0..255 (or HDR above 1) read as it happened to clip, 32-bit values above 16 bits
    as white: neither says what white is, so it is refused rather than guessed."""
    from PIL import Image

    from cinegen.media import read_image

    Image.fromarray(values).save(tmp_path / "odd.tif")
    with pytest.raises(UserError, match=re.escape(message)) as error:
        read_image(tmp_path / "odd.tif")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("suffix", [".gif", ".png"])
def test_an_animated_image_as_a_still_gives_its_first_frame_with_a_note(tmp_path, suffix):
    """An animated GIF or PNG as --image silently gave its first frame; as a mask (an animated PNG)
    that first frame stood for every frame of the clip."""
    from PIL import Image

    from cinegen.inputs import load

    path = tmp_path / f"anim{suffix}"
    frames = [Image.fromarray(np.full((16, 16, 3), level, np.uint8)) for level in (10, 200, 90)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    inputs = load(GenerateRequest("x", image=str(path), last_image=str(path)), min_frames=5, max_frames=61)
    assert (inputs.image == 10).all() and (inputs.last_image == 10).all()
    assert inputs.notes == [f"image {str(path)!r} is animated (3 frames); its first frame is used",
                            f"last image {str(path)!r} is animated (3 frames); its first frame is used"]
    if suffix == ".png":
        with pytest.raises(UserError, match=r"'.*anim.png' is an animated image \(3 frames\); as a video or mask"):
            read_video(path)


def _damaged(path, suffix, damage):
    """A 48-frame clip written as `suffix`, then cut to 60% of its bytes or 2000 bytes overwritten
    at 60%: its header stays sound."""
    t, y, x = np.ogrid[:48, :64, :96]
    frames = np.stack(np.broadcast_arrays((2 * x + 3 * t + 0 * y) % 256, (3 * y + t + 0 * x) % 256,
                                          (x + y + 5 * t) % 256), axis=-1).astype(np.uint8)
    write_video(path.with_suffix(suffix), frames, 24.0)
    data = bytearray(path.with_suffix(suffix).read_bytes())
    at = int(len(data) * 0.6)
    if damage == "cut":
        del data[at:]
    else:
        data[at : at + 2000] = np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    path.with_suffix(suffix).write_bytes(bytes(data))
    return path.with_suffix(suffix)


@pytest.mark.parametrize(("suffix", "damage"), [(".mp4", "cut"), (".mp4", "overwritten"), (".webm", "cut")])
def test_a_video_damaged_partway_is_refused_naming_the_frame(tmp_path, suffix, damage):
    """Behind a sound header (check_video passes), a damaged mp4 gave "not a readable video" with no
    hint where, and a WebM cut short decoded to its cut without an error: a shorter clip."""
    from cinegen.media import check_video

    path = _damaged(tmp_path / "clip", suffix, damage)
    check_video(path)
    with pytest.raises(UserError, match=rf"'.*clip{suffix}' is damaged at frame (\d+)") as error:
        read_video(path)
    assert 0 < int(re.search(r"frame (\d+)", str(error.value))[1]) < 48 and "\n" not in str(error.value)


def _gif(path, maker, frames):
    """`frames` as a GIF written by cinegen, Pillow or FFmpeg (through PyAV), the tools users have."""
    from PIL import Image

    if maker == "cinegen":
        write_video(path, frames, 8.0)
    elif maker == "pillow":
        images = [Image.fromarray(f) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=125, loop=0)
    else:
        import av

        with av.open(str(path), "w", format="gif") as container:
            stream = container.add_stream("gif", rate=8)
            stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "rgb8"
            for f in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="rgb8")))
            container.mux(stream.encode())
    return path


@pytest.mark.parametrize("maker", ["cinegen", "pillow", "ffmpeg"])
@pytest.mark.parametrize("cut", ["trailer", "frame_boundary", "partway"])
def test_a_gif_cut_short_is_refused_naming_the_frame(tmp_path, maker, cut):
    """A GIF ends with a trailer byte (0x3B). Cut short, at a frame's end or inside one, FFmpeg and
    Pillow stopped at the cut without an error: a shorter clip as a video (its last frame half drawn
    when cut inside it), and its first frame as --image, where a cut mp4 or WebM is refused."""
    from cinegen.media import read_first_frame

    t, y, x = np.ogrid[:6, :24, :32]
    frames = np.stack(np.broadcast_arrays((8 * x + 40 * t + 0 * y) % 256, (9 * y + 0 * x + 0 * t) % 256,
                                          (x * y + 30 * t) % 256), axis=-1).astype(np.uint8)
    whole = _gif(tmp_path / "whole.gif", maker, frames)
    assert len(read_video(whole)[0]) == 6 and read_first_frame(whole)[1] == 6  # the whole file is read as it was
    data = whole.read_bytes()
    assert data[-1:] == b";"
    frame_starts = [m.start() for m in re.finditer(rb"\x21\xf9\x04", data)]  # each frame's control extension
    assert len(frame_starts) == 6
    end, whole_frames = {"trailer": (len(data) - 1, 6), "frame_boundary": (frame_starts[4], 4),
                         "partway": (frame_starts[4] + 60, 4)}[cut]
    path = tmp_path / "cut.gif"
    path.write_bytes(data[:end])
    message = rf"^'.*cut.gif' is damaged at frame {whole_frames}: it ends after {whole_frames} whole frame\(s\)"
    with pytest.raises(UserError, match=message):
        read_video(path)
    with pytest.raises(UserError, match=message):  # as --image
        read_first_frame(path)


def test_a_gif_with_bytes_after_its_trailer_or_an_unknown_block_still_reads(tmp_path):
    """What Pillow reads, the check for a cut GIF lets through: padding after the trailer, and a stray
    byte between blocks (Pillow skips it)."""
    from cinegen.media import gif_frames_if_cut, read_first_frame

    frames = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    data = _gif(tmp_path / "a.gif", "pillow", frames).read_bytes()
    padded = tmp_path / "padded.gif"
    padded.write_bytes(data + bytes(64))
    assert gif_frames_if_cut(padded) is None and len(read_video(padded)[0]) == 3
    stray = tmp_path / "stray.gif"
    second = [m.start() for m in re.finditer(rb"\x21\xf9\x04", data)][1]
    stray.write_bytes(data[:second] + b"\x00" + data[second:])
    assert gif_frames_if_cut(stray) is None and read_first_frame(stray)[1] == 3
    assert gif_frames_if_cut(tmp_path / "a.gif") is None


def _transparent_file(path, mode):
    """A 16x16 picture whose left half is fully transparent over a hidden bright green (or gray), its
    right half opaque, and (RGBA) one column half transparent; and the pixels expected on black.
    GIF: a clip of such frames."""
    from PIL import Image

    expected = np.zeros((16, 16, 3), np.uint8)
    if mode == "LA":
        la = np.zeros((16, 16, 2), np.uint8)
        la[:, :8] = (220, 0)
        la[:, 8:] = (90, 255)
        expected[:, 8:] = 90
        Image.fromarray(la, "LA").save(path)
        return expected
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[:, :8] = (0, 255, 0, 0)
    rgba[:, 8:] = (255, 0, 0, 255)
    expected[:, 8:] = (255, 0, 0)
    if mode == "P":  # a palette whose entry 0, the hidden green, is the transparent one
        image = Image.fromarray(rgba[..., :3]).quantize(2)
        image.save(path, transparency=image.getpixel((0, 0)))
        return expected
    if mode == "GIF":  # a clip of 3 such frames; GIF has no partial transparency
        frames = [Image.fromarray(rgba, "RGBA")] * 3
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=125, disposal=2)
        return expected
    rgba[:, 8] = (200, 100, 50, 128)
    expected[:, 8] = np.round(np.array([200, 100, 50]) * 128 / 255)
    Image.fromarray(rgba, "RGBA").save(path)
    return expected


@pytest.mark.parametrize(("mode", "suffix"), [("RGBA", ".png"), ("LA", ".png"), ("P", ".png"), ("GIF", ".gif")])
def test_transparent_pixels_read_as_black_not_their_hidden_colour(tmp_path, mode, suffix):
    """The colour a file keeps under alpha 0 is whatever the editor left there: the alpha was dropped,
    so a cut-out's hidden green came into the first frame (FFmpeg showed a transparent GIF's as white)."""
    from cinegen.media import read_image

    path = tmp_path / f"cut_out{suffix}"
    expected = _transparent_file(path, mode)
    if mode != "GIF":  # GIF stands for video here (read_video reads it frame by frame)
        assert np.array_equal(read_image(path), expected)
    frames, _ = read_video(path)
    assert all(np.array_equal(frame, expected) for frame in frames), frames[0][0]


def test_a_jpeg_is_read_upright_by_its_exif_orientation(tmp_path):
    """A phone's portrait photo, stored landscape with orientation 6 (turn 90° clockwise), was read on its side."""
    from PIL import Image

    from cinegen.media import read_image

    stored = np.zeros((32, 48, 3), np.uint8)
    stored[:, :8] = 255  # the stored left edge is the top of the photo
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "portrait.jpg", exif=exif, quality=95)
    upright = read_image(tmp_path / "portrait.jpg")
    assert upright.shape == (48, 32, 3)
    assert upright[:4].mean() > 200 and upright[-4:].mean() < 50


def test_mp4_index_comes_first_for_browsers(tmp_path):
    data = write_video(tmp_path / "clip.mp4", np.zeros((5, 16, 16, 3), np.uint8), 8.0).read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")


def test_batch_variations_match_single_seeds(pipe):
    req = GenerateRequest("a blue square", width=32, height=32, frames=1, seed=5, batch=2)
    batch = pipe.run(req).videos
    single = pipe.run(GenerateRequest("a blue square", width=32, height=32, frames=1, seed=6)).frames
    np.testing.assert_allclose(batch[1].astype(int), single.astype(int), atol=1)


@pytest.mark.parametrize(("aspect", "size", "expected"), [("16:9", 64, (112, 64)), ("9:16", 64, (64, 112)),
                                                          ("1:1", 48, (48, 48)), ("4:3", 48, (64, 48))])
def test_aspect_geometry(pipe, aspect, size, expected):
    g = pipe.geometry(GenerateRequest("x", aspect=aspect, size=size, seconds=1, fps=8))
    assert (g.width, g.height) == expected
    assert g.frames == 9 and g.latent == (3, expected[1] // 8, expected[0] // 8)


@pytest.mark.parametrize("bad", [dict(prompt=""), dict(prompt="x", width=7), dict(prompt="x", seconds=0),
                                 dict(prompt="x", aspect="wide"), dict(prompt="x", fps=100000),
                                 dict(prompt="x", frames=6), dict(prompt="x", steps=0),
                                 dict(prompt="x", sampler="ddim"), dict(prompt="x", seconds=4 * 3600),
                                 dict(prompt="x", guidance_min_t=1.0), dict(prompt="x", guidance_min_t=-0.1),
                                 dict(prompt="x", size=0, aspect="1:1"), dict(prompt="x", size=-64),
                                 dict(prompt="x", size=48, width=48), dict(prompt="x", frames=1 + 4 * 2000)])
def test_bad_requests_raise_user_errors(pipe, bad):
    """--size 0 fell back to the model's size and --size -64 made 16 px; --frames had no length limit
    (8001 frames is 1000 s at 8 fps, where --seconds stops at 600)."""
    with pytest.raises(UserError):
        pipe.validate(GenerateRequest(**bad))


def test_size_alone_keeps_the_models_aspect(pipe):
    """Without --aspect (or an image or video to follow), --size was ignored: the model's 32 x 32."""
    g = pipe.geometry(GenerateRequest("x", size=48, seconds=1))
    assert (g.width, g.height) == (48, 48)


def test_cli_writes_mp4_with_metadata_and_reproduces_from_sidecar(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "clip.mp4"
    assert main(["generate", "a green dot moves up", "--model", str(tiny_model_dir), "--frames", "5",
                 "--width", "32", "--height", "48", "--seed", "7", "-o", str(out), "-q"]) == 0
    frames, fps = read_video(out)
    assert frames.shape == (5, 48, 32, 3) and fps == 8
    record = json.loads(out.with_suffix(".json").read_text())
    assert read_metadata(out) == record
    assert record["request"]["prompt"] == "a green dot moves up" and record["request"]["seed"] == 7
    assert (record["device"], record["dtype"]) == ("cpu", "float32")
    # Device and dtype are recorded for information: --from replays the request on the device it is given.
    out.with_suffix(".json").write_text(json.dumps(record | {"device": "cuda", "dtype": "bfloat16"}))
    again = tmp_path / "again.mp4"
    assert main(["generate", "--from", str(out.with_suffix(".json")), "--model", str(tiny_model_dir),
                 "--device", "cpu", "-o", str(again), "-q"]) == 0
    assert np.array_equal(read_video(again)[0], frames)


def _png_frames(path):
    from cinegen.media import read_image

    return np.stack([read_image(p) for p in sorted(path.parent.glob(f"{path.stem}_[0-9][0-9][0-9][0-9].png"))])


def test_cli_from_reproduces_every_variation_of_a_batch(tiny_model_dir, tmp_path, monkeypatch):
    """A sidecar of --batch records its variation as a request of its own (seed + i, batch 1), but the
    batch was sampled together, and a matrix product rounds differently for 2 rows than for 1: with
    the shipped model on a CPU, `--from out_0.json` differed by up to 6 levels. Here the denoiser's
    rounding is made to depend on the batch, as a real kernel's may."""
    from cinegen.backends.native import NativeBackend

    velocity = NativeBackend.velocity
    monkeypatch.setattr(NativeBackend, "velocity",
                        lambda self, latent, t, context: velocity(self, latent, t, context) + 0.01 * len(latent))
    common = ["--model", str(tiny_model_dir), "--device", "cpu", "-q"]
    assert main(["generate", "a green dot", "--frames", "5", "--seed", "4", "--batch", "2",
                 "-o", str(tmp_path / "b.png"), *common]) == 0
    for i in range(2):
        assert main(["generate", "--from", str(tmp_path / f"b_{i}.json"), "-o", str(tmp_path / f"again{i}.png"),
                     *common]) == 0
        assert np.array_equal(_png_frames(tmp_path / f"again{i}.png"), _png_frames(tmp_path / f"b_{i}.png"))
    # And a variation is the video of its seed, as --help says.
    assert main(["generate", "a green dot", "--frames", "5", "--seed", "5", "-o", str(tmp_path / "s.png"), *common]) == 0
    assert np.array_equal(_png_frames(tmp_path / "s.png"), _png_frames(tmp_path / "b_1.png"))


def test_cli_from_a_run_with_an_empty_input_path_makes_it_again(tiny_model_dir, tmp_path):
    """`--image ""` (a script's unset variable) names no file, so the run made a plain video; its
    sidecar's --from was refused: "made from --image '', which does not exist here"."""
    common = ["--model", str(tiny_model_dir), "--device", "cpu", "-q"]
    assert main(["generate", "a green dot", "--image", "", "--frames", "5", "-o", str(tmp_path / "a.png"), *common]) == 0
    assert main(["generate", "--from", str(tmp_path / "a.json"), "-o", str(tmp_path / "b.png"), *common]) == 0
    assert np.array_equal(_png_frames(tmp_path / "b.png"), _png_frames(tmp_path / "a.png"))


def test_cli_from_an_unreadable_input_is_one_line(tmp_path, monkeypatch, capsys):
    """--from reads each input for its sha256 before the run does: a file this user may not read was
    a PermissionError traceback (root reads any file, so the refusal is made here by hashlib)."""
    import hashlib

    def refuse(fp, digest):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(hashlib, "file_digest", refuse)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not read")
    record = tmp_path / "out.json"
    record.write_text(json.dumps({"request": {"prompt": "x", "task": "edit", "video": str(clip)}}))
    assert main(["generate", "--from", str(record), "-o", str(tmp_path / "again.mp4")]) == 2
    assert capsys.readouterr().err == f"cinegen: error: input file {str(clip)!r} is not readable (Permission denied)\n"


@pytest.mark.parametrize("given", [["--frames", "1"], ["--seed", "0"], ["--negative", ""], ["a blue dot"], ["--draft"]])
def test_cli_from_refuses_settings_that_would_change_the_output(tiny_model_dir, tmp_path, capsys, given):
    """`--from x.json --frames 1` (or a new seed, even 0, or a prompt) made the recorded request and
    silently ignored the rest."""
    record = tmp_path / "in.json"
    record.write_text(json.dumps({"request": {"prompt": "a green dot", "frames": 5, "seed": 3}}))
    out = tmp_path / "out"
    out.mkdir()
    args = ["generate", *given, "--from", str(record), "--model", str(tiny_model_dir), "--device", "cpu",
            "-o", str(out / "x.mp4"), "-q"]
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    flag = "PROMPT" if given == ["a blue dot"] else given[0]
    assert len(lines) == 1 and lines[0].startswith("cinegen: error: --from") and f"leave out {flag} " in lines[0], lines
    assert list(out.iterdir()) == []


def test_guidance_min_t_is_recorded_and_old_sidecars_guide_every_step(tiny_model_dir, tmp_path):
    out = tmp_path / "clip.mp4"
    common = ["--model", str(tiny_model_dir), "--frames", "5", "--guidance", "6", "-q"]
    assert main(["generate", "a red ball", *common, "--guidance-min-t", "0.5", "-o", str(out)]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["request"]["guidance_min_t"] == 0.5
    every = tmp_path / "every.mp4"
    assert main(["generate", "a red ball", *common, "--guidance-min-t", "0", "-o", str(every)]) == 0
    assert not np.array_equal(read_video(every)[0], read_video(out)[0])
    # A sidecar from before the option: no field, so every step was guided.
    old = json.loads(every.with_suffix(".json").read_text())
    del old["request"]["guidance_min_t"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    again = tmp_path / "again.mp4"
    assert main(["generate", "--from", str(tmp_path / "old.json"), "--model", str(tiny_model_dir),
                 "-o", str(again), "-q"]) == 0
    assert np.array_equal(read_video(again)[0], read_video(every)[0])


def test_cli_png_output_is_an_image(tiny_model_dir, tmp_path):
    out = tmp_path / "still.png"
    assert main(["generate", "a yellow triangle", "--model", str(tiny_model_dir), "-o", str(out), "-q"]) == 0
    frames, _ = read_video(out)
    assert frames.shape == (1, 32, 32, 3)


def test_cli_prints_the_files_it_wrote(tiny_model_dir, tmp_path, capsys):
    """Many frames to .png are numbered files; the CLI printed `frames_0.png`, which does not exist."""
    out = tmp_path / "frames.png"
    assert main(["generate", "a yellow triangle", "--model", str(tiny_model_dir), "--frames", "5",
                 "--batch", "2", "-o", str(out), "-q"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(tmp_path / "frames_0_0000.png"), str(tmp_path / "frames_1_0000.png")]
    assert (tmp_path / "frames_1_0004.png").is_file() and (tmp_path / "frames_1.json").is_file()


@pytest.mark.parametrize("args", [["generate", "", "--frames", "1"], ["generate", "x", "--width", "7"],
                                  ["generate", "x", "--seconds", "0"], ["generate", "x", "--aspect", "3:x"],
                                  ["generate", "x", "-o", "/no/such/dir/x.mp4"], ["generate", "x", "-o", "x.avi"]])
def test_cli_bad_input_one_line_exit_2_no_file(tiny_model_dir, tmp_path, monkeypatch, capsys, args):
    monkeypatch.chdir(tmp_path)
    out_args = [] if "-o" in args else ["-o", str(tmp_path / "x.mp4")]
    assert main([*args, "--model", str(tiny_model_dir), *out_args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cinegen: error:"), lines
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sidecar", [b'{"request": {}}', b'{"request": "x"}', b'{"request": {"prompt": "x", "width": "big"}}',
                                     b'{"request": {"prompt": "x", "seed": true}}', b"\xff\xfe not text"])
def test_cli_from_a_broken_sidecar_one_line_exit_2_no_file(tiny_model_dir, tmp_path, capsys, sidecar):
    """A request without a prompt, not an object, with a field of the wrong type, or a file that is not
    UTF-8 gave a traceback (TypeError, UnicodeDecodeError)."""
    (tmp_path / "in.json").write_bytes(sidecar)
    out = tmp_path / "out"
    out.mkdir()
    args = ["generate", "--from", str(tmp_path / "in.json"), "--model", str(tiny_model_dir), "-o", str(out / "x.mp4")]
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cinegen: error:"), lines
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("where", ["folder", "proc"])
def test_cli_output_the_folder_cannot_take_fails_before_the_model_loads(tiny_model_dir, tmp_path, monkeypatch,
                                                                       capsys, where):
    """A folder named like the output passed check_output_path, and the rename over it raised
    IsADirectoryError after the whole generation; for root /proc passed os.access, and the write
    failed at the end (FileNotFoundError)."""
    def load(*args, **kwargs):
        raise AssertionError("the model was loaded before the output path was checked")

    monkeypatch.setattr(Pipeline, "load", load)
    (tmp_path / "x.mp4").mkdir()
    output = str(tmp_path / "x.mp4") if where == "folder" else "/proc/x.mp4"
    args = ["generate", "x", "--frames", "1", "--model", str(tiny_model_dir), "-o", output, "-q"]
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [{
        "folder": f"cinegen: error: output {output!r} is a folder; give a file name such as {output + '/out.mp4'!r}",
        "proc": "cinegen: error: output folder '/proc' is not writable",
    }[where]]
    assert [p.name for p in tmp_path.iterdir()] == ["x.mp4"] and not any((tmp_path / "x.mp4").iterdir())


def test_cli_interrupted_while_writing_leaves_the_old_output(tiny_model_dir, tmp_path, monkeypatch, capsys):
    """Ctrl-C in the middle of encoding: no partial file, and the output from before is still whole."""
    import cinegen.media

    out = tmp_path / "x.mp4"
    out.write_bytes(b"the earlier video")

    def interrupted(path, *args):
        path.write_bytes(b"half a video")
        raise KeyboardInterrupt

    monkeypatch.setattr(cinegen.media, "_write_av", interrupted)
    args = ["generate", "x", "--frames", "5", "--model", str(tiny_model_dir), "-o", str(out), "-q"]
    assert main(args) == 130
    assert capsys.readouterr().err.strip() == "cinegen: interrupted"
    assert [p.name for p in tmp_path.iterdir()] == ["x.mp4"] and out.read_bytes() == b"the earlier video"


def test_cli_terminated_while_writing_leaves_no_temporary_file(tiny_model_dir, tmp_path):
    """SIGTERM (kill, timeout, a batch scheduler) in the middle of encoding ended the process on the
    spot and left the hidden `.x.*.mp4` beside the output; it now unwinds like Ctrl-C, and the
    handler from before comes back."""
    out = tmp_path / "x.mp4"
    out.write_bytes(b"the earlier video")
    script = f"""
import os, signal, sys
import cinegen.media
from cinegen.cli import main

def terminated(path, *args):
    path.write_bytes(b"half a video")
    os.kill(os.getpid(), signal.SIGTERM)

cinegen.media._write_av = terminated
code = main(["generate", "x", "--frames", "5", "--model", {str(tiny_model_dir)!r}, "-o", {str(out)!r}, "-q"])
assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
sys.exit(code)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert (proc.returncode, proc.stderr.strip()) == (143, "cinegen: terminated")
    assert [p.name for p in tmp_path.iterdir()] == ["x.mp4"] and out.read_bytes() == b"the earlier video"


def test_png_frames_are_written_as_one_whole_set(tmp_path, monkeypatch):
    """Many frames to .png: a shorter run left the longer run's frames_0005.png ... behind, and a failure
    partway left new frames beside old ones."""
    from PIL import Image

    out = tmp_path / "frames.png"
    write_video(out, np.full((9, 16, 16, 3), 10, np.uint8), 8.0)
    write_video(out, np.full((5, 16, 16, 3), 20, np.uint8), 8.0)
    names = [f"frames_{i:04d}.png" for i in range(5)]
    assert sorted(p.name for p in tmp_path.iterdir()) == names

    save, saved = Image.Image.save, []

    def disk_full_at_the_third(image, *args, **kwargs):
        saved.append(image)
        if len(saved) == 3:
            raise OSError(28, "No space left on device")
        return save(image, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", disk_full_at_the_third)
    with pytest.raises(OSError):
        write_video(out, np.full((5, 16, 16, 3), 30, np.uint8), 8.0)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    assert all((read_video(tmp_path / name)[0] == 20).all() for name in names)
    write_video(out, np.full((1, 16, 16, 3), 40, np.uint8), 8.0)  # one image: the numbered set is stale
    assert [p.name for p in tmp_path.iterdir()] == ["frames.png"]


def test_cli_process_exit_code_and_no_traceback(tiny_model_dir, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cinegen.cli", "generate", "x", "--width", "7", "--model",
                           str(tiny_model_dir), "-o", str(tmp_path / "x.mp4")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["cinegen: error: width 7 must be a multiple of 16 (or of 8, such as 1080) between 16 and 1920"]
    assert list(tmp_path.iterdir()) == []


def test_model_dir_with_wrong_shapes_is_rejected(tiny_model_dir, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny_model_dir, bad)
    config = json.loads((bad / "config.json").read_text())
    config["denoiser"]["dim"] = 64
    config["denoiser"]["rope_split"] = [4, 6, 6]
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="shape"):
        Pipeline.load(bad, device="cpu")


@pytest.mark.parametrize(("name", "content"), [("model.safetensors", b"\x00" * 64), ("config.json", b"[]")])
def test_model_dir_with_a_corrupt_file_is_rejected(tiny_model_dir, tmp_path, name, content):
    """Random bytes as weights gave SafetensorError and a list as config AttributeError, with tracebacks."""
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny_model_dir, bad)
    (bad / name).write_bytes(content)
    with pytest.raises(UserError, match=name):
        Pipeline.load(bad, device="cpu")


def test_python_dash_m_cinegen_runs_the_cli():
    """`torchrun -m cinegen train ...` (and `python -m cinegen`) need cinegen/__main__.py."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "cinegen", "train", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "--config" in proc.stdout and proc.stdout.startswith("usage: cinegen")


def test_a_prompt_is_encoded_once_and_alike_in_any_batch(pipe, monkeypatch):
    backend = pipe.backend
    backend._text_cache.clear()
    encoded = []
    encode = backend.text_encoder.encode
    monkeypatch.setattr(backend.text_encoder, "encode", lambda prompts: encoded.extend(prompts) or encode(prompts))
    batch = backend.encode_text(["a red ball", "", "a red ball"], fps=8.0)
    again = backend.encode_text([""], fps=8.0)
    assert encoded == ["a red ball", ""]
    alone = encode(["a red ball"])
    torch.testing.assert_close(batch.tokens[2:], alone.tokens)
    torch.testing.assert_close(batch.tokens[1:2], again.tokens)
    assert not torch.equal(batch.tokens[0], batch.tokens[1])
    assert batch.tokens.shape[0] == batch.mask.shape[0] == batch.pooled.shape[0] == batch.fps.shape[0] == 3


def test_decoded_pixels_hold_through_sub_level_changes_and_follow_real_ones():
    # A still gray background at 127.5 levels that the "decoder" redraws within ±0.4 levels.
    video = (torch.rand(1, 3, 9, 8, 8, generator=torch.Generator().manual_seed(0)) - 0.5) * (0.8 / 127.5)
    video[:, :, 5:, 0, 0] += 10 / 127.5  # one pixel really changes, by 10 levels, at frame 5
    plain, steady = to_uint8(video, hold=0.0)[0].astype(int), to_uint8(video, hold=1.0)[0].astype(int)
    assert (np.diff(plain[:, 1:, 1:], axis=0) != 0).any()  # rounding alone toggles
    assert (np.diff(steady[:, 1:, 1:], axis=0) == 0).all()
    assert steady[5, 0, 0, 0] - steady[4, 0, 0, 0] >= 9 and (steady[0] == plain[0]).all()
    levels = ((video + 1) * 127.5)[0].permute(1, 2, 3, 0).numpy()
    assert np.abs(steady - levels).max() <= 1.0 + 1e-4  # never more than `hold` off
