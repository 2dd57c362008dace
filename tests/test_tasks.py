"""Every canvas task on the tiny random model: given frames kept exactly, lengths, windows, errors."""

import dataclasses
import json
import re
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from cinegen.canvas import edit, pixel_mask_to_tokens
from cinegen.cli import main
from cinegen.errors import UserError
from cinegen.media import probe_media, read_video, write_video
from cinegen.pipeline import LONG_WINDOW_LATENTS, GenerateRequest, Pipeline, draft_size
from cinegen.sampling import FlowEdit, sample


@pytest.fixture(scope="module")
def pipe(tiny_model_dir):
    return Pipeline.load(tiny_model_dir, device="cpu")


@pytest.fixture(scope="module")
def clips(pipe, tmp_path_factory):
    """A 9-frame source clip, a different 13-frame clip, and a still image, all 32x32."""
    folder = tmp_path_factory.mktemp("clips")
    a = pipe.run(GenerateRequest("a red ball moves right", frames=9, seed=1)).frames
    b = pipe.run(GenerateRequest("a blue square moves up", frames=13, seed=2)).frames
    write_video(folder / "a.mp4", a, 8)
    write_video(folder / "b.mp4", b, 8)
    write_video(folder / "img.png", a[0], 8)
    write_video(folder / "wide.png", np.zeros((32, 64, 3), np.uint8), 8)
    return folder


def src(clips, name):
    return read_video(clips / name)[0]


class Spy:
    """Wraps a backend and records the latent shape of every velocity call."""

    def __init__(self, backend):
        self.backend, self.shapes = backend, []

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def velocity(self, latent, t_tokens, context):
        self.shapes.append(tuple(latent.shape))
        return self.backend.velocity(latent, t_tokens, context)


def test_image_to_video_keeps_the_first_latent_frame_and_ends_on_the_last_image(pipe, clips):
    req = GenerateRequest(
        "a red ball", image=str(clips / "img.png"), last_image=str(clips / "img.png"), frames=13
    )
    result = pipe.run(req)
    assert result.frames.shape == (13, 32, 32, 3)
    image = read_video(clips / "img.png")[0]
    assert np.array_equal(result.frames[0], image[0]) and np.array_equal(result.frames[-1], image[0])
    first = pipe.backend.encode_video(
        torch.from_numpy(image.copy()).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    )
    torch.testing.assert_close(result.latents[0, :, :1], first[0].cpu())
    held = pipe.backend.encode_video(
        torch.from_numpy(np.repeat(image, 5, 0)).permute(3, 0, 1, 2)[None] / 127.5 - 1
    )
    torch.testing.assert_close(result.latents[0, :, -1:], held[0, :, 1:2].cpu())


def test_a_transparent_first_and_last_image_are_on_black(pipe, tmp_path):
    """The RGB under a cut-out's fully transparent pixels (here a bright green no viewer shows) came
    into the conditioning frames, and so into frame 0 and the last frame, which come back exactly."""
    from PIL import Image

    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[:, :16] = (0, 255, 0, 0)
    rgba[:, 16:] = (255, 0, 0, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cut_out.png")
    image = str(tmp_path / "cut_out.png")
    frames = pipe.run(GenerateRequest("a red ball", image=image, last_image=image, frames=9)).frames
    on_black = np.zeros((32, 32, 3), np.uint8)
    on_black[:, 16:] = (255, 0, 0)
    assert np.array_equal(frames[0], on_black) and np.array_equal(frames[-1], on_black)


def test_image_of_another_aspect_is_refused_unless_the_size_follows_it(pipe, clips):
    with pytest.raises(UserError, match="aspect"):
        pipe.validate(GenerateRequest("x", image=str(clips / "wide.png"), width=32, height=32))
    g = pipe.validate(GenerateRequest("x", image=str(clips / "wide.png")))
    assert g.width / g.height == 2


def test_an_input_too_thin_to_follow_names_its_own_size(pipe):
    """A 2x256 video followed at the short side gives 32x4096: the error named "height 4096", a size
    the user never gave."""
    with pytest.raises(UserError, match=r"^the input is 2x256: .* gives 32x4096, over 1920 px"):
        pipe.geometry(GenerateRequest("x", task="edit"), source=(2, 256))
    assert pipe.geometry(GenerateRequest("x", task="edit", width=32, height=32), source=(2, 256)).height == 32


@pytest.mark.parametrize("backward", [False, True])
def test_extend_keeps_the_clip_exactly_and_adds_the_asked_length(pipe, clips, backward):
    source = src(clips, "a.mp4")
    out = pipe.run(
        GenerateRequest("a red ball", task="extend", video=str(clips / "a.mp4"), seconds=3, backward=backward)
    ).frames
    assert len(out) == len(source) + 24  # 3 s at 8 fps = 1 + 4·6 frames -> 24 new
    kept = out[-len(source) :] if backward else out[: len(source)]
    assert np.array_equal(kept, source)


def test_connect_is_a_then_transition_then_b(pipe, clips):
    a, b = src(clips, "a.mp4"), src(clips, "b.mp4")
    out = pipe.run(
        GenerateRequest(
            "x", task="connect", video=str(clips / "a.mp4"), video_b=str(clips / "b.mp4"), seconds=1
        )
    ).frames
    assert len(out) == len(a) + 7 + len(b)  # 1 s = 2 latent frames -> 4·2 − 1 frames between
    assert np.array_equal(out[: len(a)], a) and np.array_equal(out[-len(b) :], b)


def test_connect_plays_b_at_its_own_speed_when_its_fps_differs(pipe, clips, tmp_path):
    """B at 16 fps was joined frame for frame to an 8 fps A: it played at half speed, with no note."""
    write_video(tmp_path / "b16.mp4", src(clips, "b.mp4"), 16)
    b16 = read_video(tmp_path / "b16.mp4")[0]
    out = pipe.run(GenerateRequest("x", task="connect", video=str(clips / "a.mp4"), video_b=str(tmp_path / "b16.mp4")))
    assert np.array_equal(out.frames[-7:], b16[::2])  # 13 frames at 16 fps: 7 at 8
    assert out.fps == 8 and len(out.frames) == 9 + 7 + 7
    assert "second video 16 fps resampled to the first's 8 fps (7 frames)" in out.metadata["notes"]


@pytest.mark.parametrize("backward", [False, True])
def test_a_source_is_resampled_to_the_asked_fps_not_relabelled(pipe, clips, backward):
    """extend --fps 16 of an 8 fps clip took its frames one for one: the kept part played twice as fast."""
    a = src(clips, "a.mp4")
    out = pipe.run(GenerateRequest("x", task="extend", video=str(clips / "a.mp4"), fps=16, seconds=1,
                                   backward=backward))
    kept = out.frames[-17:] if backward else out.frames[:17]
    assert out.fps == 16 and np.array_equal(kept, a[np.arange(17) // 2])  # 9 frames at 8 fps: 17 at 16
    assert "video 8 fps resampled to 16 fps (17 frames)" in out.metadata["notes"]
    same = pipe.run(GenerateRequest("x", task="extend", video=str(clips / "a.mp4"), fps=8, seconds=1))
    assert np.array_equal(same.frames[:9], a) and not any("resampled" in n for n in same.metadata.get("notes", []))


def test_text_loop_runs_on_circular_time(pipe, monkeypatch):
    spy = Spy(pipe.backend)
    looped = Pipeline(spy, pipe.defaults, pipe.model_name)
    rolled = []
    real_roll = torch.roll
    monkeypatch.setattr(torch, "roll", lambda x, k, dims: rolled.append(k) or real_roll(x, k, dims))
    out = looped.run(GenerateRequest("a red ball spins", task="loop", frames=17)).frames
    assert out.shape == (16, 32, 32, 3)  # the loop repeats every 4·4 frames, the nearest to 17
    assert len(set(rolled)) > 1  # the seam moved between steps


def test_video_loop_starts_with_the_clip_and_bridges_back(pipe, clips):
    b = src(clips, "b.mp4")
    out = pipe.run(GenerateRequest("", task="loop", video=str(clips / "b.mp4"))).frames
    assert np.array_equal(out[: len(b)], b) and len(out) == len(b) + 7  # a bridge of 2 latent frames


def test_made_frames_is_what_each_task_makes(pipe, clips, tmp_path):
    """The server shows and charges a job's length from `made_frames`, before anything runs: it must
    agree with what the task functions make (the frames they add to any given clip)."""
    from cinegen.pipeline import made_frames

    a, b = str(clips / "a.mp4"), str(clips / "b.mp4")
    given = {"a": len(src(clips, "a.mp4")), "b": len(src(clips, "b.mp4"))}
    # 17 frames at 16 fps: a loop at 8 fps resamples it to 9 (and then makes 9 + 7, not 17 + 7).
    fast = str(write_video(tmp_path / "fast.mp4", src(clips, "b.mp4")[[0, 1, 2, 3] * 4 + [0]], 16))
    for req, kept in [
        (GenerateRequest("x", seconds=0.01), 0),
        (GenerateRequest("x", seconds=2), 0),
        (GenerateRequest("x", task="extend", video=a, seconds=3), given["a"]),
        (GenerateRequest("x", task="extend", video=a, seconds=1, backward=True), given["a"]),
        (GenerateRequest("x", task="connect", video=a, video_b=b, seconds=1), given["a"] + given["b"]),
        (GenerateRequest("x", task="connect", video=a, video_b=b, seconds=2), given["a"] + given["b"]),
        (GenerateRequest("x", task="loop", frames=17), 0),
        (GenerateRequest("x", task="loop", seconds=3), 0),
        (GenerateRequest("", task="loop", video=b), 0),  # the whole clip, then a bridge back
        (GenerateRequest("", task="loop", video=b, seconds=1), 0),  # the first 9 frames, then a bridge
        (GenerateRequest("", task="loop", video=fast, fps=8), 0),
        (GenerateRequest("", task="loop", video=fast, seconds=5, fps=8), 0),
        (GenerateRequest("x", task="edit", video=b, seconds=1), 0),
        (GenerateRequest("x", task="edit", video=fast, fps=8), 0),
    ]:
        video = probe_media(req.video) if req.video else None
        made = made_frames(req, pipe.validate(req), pipe.backend.time_factor, video)
        assert made == len(pipe.run(req).frames) - kept, req


def test_loaded_frames_is_what_a_task_reads(pipe, clips, tmp_path):
    """The server refuses a source too short for the model from `loaded_frames`, before a worker reads
    it: it must count what `inputs.load` gives, resampled to the asked fps, and connect's second
    video to the first's rate."""
    from cinegen.pipeline import loaded_frames

    a, b = str(clips / "a.mp4"), str(clips / "b.mp4")  # 9 and 13 frames at 8 fps
    b16 = str(write_video(tmp_path / "b16.mp4", src(clips, "b.mp4"), 16))
    for req in [
        GenerateRequest("x", task="edit", video=b),
        GenerateRequest("x", task="edit", video=b, fps=8.05),  # within 1%: not resampled
        GenerateRequest("x", task="edit", video=b16, fps=8),
        GenerateRequest("x", task="extend", video=a, fps=24, seconds=1),
        GenerateRequest("x", task="connect", video=a, video_b=b16),
        GenerateRequest("x", task="connect", video=a, video_b=b16, fps=16),
        GenerateRequest("x", task="connect", video=b16, video_b=a, fps=12),
    ]:
        inputs = pipe.prepare(req).inputs
        first = probe_media(req.video)
        assert loaded_frames(req, first) == len(inputs.video), req
        if req.video_b:
            assert loaded_frames(req, probe_media(req.video_b), first) == len(inputs.video_b), req


def test_a_source_too_short_at_the_asked_fps_is_one_line(tiny_model_dir, clips, tmp_path, capsys):
    """6 frames at 24 fps are 2 at 8 fps, under the model's 5: the CLI says so in one line, as the
    server does at submit (`inputs.resampled_too_short`)."""
    short = write_video(tmp_path / "short24fps.mp4", src(clips, "b.mp4")[:6], 24)
    common = ["--model", str(tiny_model_dir), "--device", "cpu", "--size", "32", "-q"]
    for args, named in [
        (["edit", str(short), "x", "--fps", "8"], f"video {str(short)!r}"),
        (["loop", "--video", str(short), "--fps", "8"], f"video {str(short)!r}"),
        (["connect", str(clips / "a.mp4"), str(short), "x"], f"second video {str(short)!r}"),
    ]:
        capsys.readouterr()
        assert main([*args, "-o", str(tmp_path / "out.mp4"), *common]) == 2
        rate = "the first's 8 fps" if args[0] == "connect" else "8 fps"
        assert capsys.readouterr().err.strip().splitlines() == [
            f"cinegen: error: {named}: 6 frame(s) at 24 fps resample to 2 at {rate}; at least 5 "
            "(one latent frame after the first) are needed"
        ]
        assert not (tmp_path / "out.mp4").exists()


def test_made_frames_of_an_edit_is_at_most_what_an_edit_keeps(pipe, tmp_path):
    """An edit keeps at most MAX_CANVAS_LATENTS of its source, whatever the seconds asked: the
    server showed and charged a 20 s edit (or a remix of a long video) as 161 frames, not 61."""
    from cinegen.pipeline import MAX_CANVAS_LATENTS, made_frames

    f = pipe.backend.time_factor
    longest = 1 + f * (MAX_CANVAS_LATENTS - 1)
    long = tmp_path / "long.mp4"
    write_video(long, np.zeros((longest + 2 * f, 32, 32, 3), np.uint8), 8.0)
    req = GenerateRequest("x", task="edit", video=str(long), seconds=20, steps=1)
    made = made_frames(req, pipe.validate(req), f, probe_media(long))
    assert made == longest == len(pipe.run(req).frames)


def test_mask_edit_keeps_outside_exactly_and_changes_inside(pipe, clips, tmp_path):
    source = src(clips, "a.mp4")
    mask = np.zeros((32, 32, 3), np.uint8)
    mask[:, 16:] = 255  # regenerate the right half
    write_video(tmp_path / "mask.png", mask, 8)
    out = pipe.run(
        GenerateRequest(
            "a blue ball", task="edit", video=str(clips / "a.mp4"), mask=str(tmp_path / "mask.png")
        )
    ).frames
    assert out.shape == source.shape
    assert np.array_equal(out[:, :, :16], source[:, :, :16])
    assert not np.array_equal(out[:, :, 16:], source[:, :, 16:])


def test_edit_strength_changes_less_at_low_strength(pipe, clips):
    source = src(clips, "a.mp4").astype(float)
    diffs = []
    for strength in (0.2, 1.0):
        out = pipe.run(
            GenerateRequest("a blue ball", task="edit", video=str(clips / "a.mp4"), strength=strength)
        )
        diffs.append(np.abs(out.frames - source).mean())
    assert diffs[0] < diffs[1]


def test_flow_edit_with_the_source_prompt_returns_the_source():
    """v(target | z_src + x − src) − v(source | z_src) is 0 when the prompts match and x = src."""

    @dataclass
    class Ctx:
        scale: torch.Tensor

    class Field:
        def velocity(self, latent, t_tokens, context):
            t = t_tokens.repeat_interleave(2, -2).repeat_interleave(2, -1)[:, None]
            return latent * context.scale.view(-1, 1, 1, 1, 1) + t

    source = torch.randn(3, 2, 4, 4)
    ctx = Ctx(torch.tensor([0.7]))
    out = sample(
        Field(),
        edit((2, 4, 4), source, 0.8),
        torch.randn(1, 3, 2, 4, 4),
        ctx,
        ctx,
        steps=4,
        flow_edit=FlowEdit(ctx, seed=3),
    )
    torch.testing.assert_close(out[0], source)
    moved = sample(
        Field(),
        edit((2, 4, 4), source, 0.8),
        torch.randn(1, 3, 2, 4, 4),
        Ctx(torch.tensor([1.5])),
        ctx,
        steps=4,
        flow_edit=FlowEdit(ctx, seed=3),
    )
    assert not torch.allclose(moved[0], source)


def test_flow_edit_batch_items_are_the_runs_of_their_seeds(pipe, clips):
    """FlowEdit drew one noise for the whole batch from the first seed: out_1 was not what its
    sidecar's seed makes (`--from out_1.json`)."""
    req = GenerateRequest("a blue ball", task="edit", video=str(clips / "a.mp4"), source_prompt="a red ball")
    batch = pipe.run(dataclasses.replace(req, batch=2)).videos
    assert np.array_equal(batch[1], pipe.run(dataclasses.replace(req, seed=1)).frames)


def test_long_video_runs_in_bounded_windows(pipe):
    spy = Spy(pipe.backend)
    long = Pipeline(spy, pipe.defaults, pipe.model_name)
    out = long.run(GenerateRequest("a red ball moves right", seconds=10)).frames
    assert len(out) == 81
    assert max(s[2] for s in spy.shapes) == LONG_WINDOW_LATENTS  # never more than one window at once
    assert len(spy.shapes) >= 3 * pipe.defaults.steps  # several windows


def test_a_long_videos_later_windows_are_guided_on_their_context(pipe):
    spy = Spy(pipe.backend)
    long = Pipeline(spy, pipe.defaults, pipe.model_name)
    steps = pipe.defaults.steps
    out = long.run(GenerateRequest("a red ball moves right", seconds=10, guidance=3.0, context_guidance=2.5))
    branches = [s[0] for s in spy.shapes]  # one velocity call per step, its guidance branches batched
    assert branches[:steps] == [2] * steps  # the first window knows nothing: text guidance only
    assert len(branches) > steps and branches[steps:] == [3] * (len(branches) - steps)  # plus its context
    assert out.metadata["request"]["context_guidance"] == 2.5
    spy.shapes.clear()
    long.run(GenerateRequest("a red ball moves right", seconds=10, guidance=3.0, context_guidance=1.0))
    assert {s[0] for s in spy.shapes} == {2}
    with pytest.raises(UserError, match="context guidance 40"):
        pipe.run(GenerateRequest("a red ball", seconds=10, context_guidance=40.0))
    # A record from before the context guidance existed reproduces what it made then: none.
    assert GenerateRequest.from_dict({"prompt": "a red ball"}).context_guidance == 1.0


class TimeSpy(Spy):
    """Records the noise level of the first token (a known one in a forward extension) per call."""

    def __init__(self, backend):
        super().__init__(backend)
        self.first_token_t = []

    def velocity(self, latent, t_tokens, context):
        self.first_token_t.append(float(t_tokens.reshape(t_tokens.shape[0], -1)[:, 0].max()))
        return self.backend.velocity(latent, t_tokens, context)


def test_windows_after_the_first_see_their_generated_context_at_the_context_t_floor(pipe, clips):
    spy = TimeSpy(pipe.backend)
    extending = Pipeline(spy, pipe.defaults, pipe.model_name)
    req = GenerateRequest("a red ball", task="extend", video=str(clips / "a.mp4"), seconds=4, context_t_floor=0.2)
    out = extending.run(req)
    steps, seen = pipe.defaults.steps, spy.first_token_t
    assert len(seen) >= 3 * steps  # three windows or more
    assert seen[:steps] == [0.0] * steps  # the user's own frames: exact
    assert seen[steps:] == pytest.approx([0.2] * (len(seen) - steps))  # generated ones
    assert out.metadata["request"]["context_t_floor"] == 0.2
    with pytest.raises(UserError, match="context t floor 1.0"):
        pipe.run(GenerateRequest("a red ball", task="extend", video=str(clips / "a.mp4"), context_t_floor=1.0))


def test_every_window_carries_detail_from_one_fixed_frame(pipe, clips, monkeypatch):
    """Never from the frame the window before just made: its residual is that window's drift, and
    carried on it compounds (a black background turned gray within a generated minute). Every
    window of an extension carries the user's frame, against its decode in the first window;
    every window of a long video carries the anchor, which it decodes at its own frame 0."""
    import cinegen.pipeline as pipeline

    carried, real = [], pipeline.carry_detail

    def spy(frames, known, decoded=None):
        carried.append((known, decoded or {}))
        return real(frames, known, decoded)

    monkeypatch.setattr(pipeline, "carry_detail", spy)
    source = src(clips, "a.mp4")
    for backward, user_frame in ((False, source[-1]), (True, source[0])):
        carried.clear()
        pipe.run(GenerateRequest("a red ball", task="extend", video=str(clips / "a.mp4"), seconds=4, backward=backward))
        assert len(carried) >= 2  # several windows
        (_, first_decoded), *later = carried
        assert all(np.array_equal(k, user_frame) for known, _ in carried for k in known.values())
        assert all(np.array_equal(d, first_decoded[i]) for _, decoded in later for i, d in decoded.items())
        assert all(len(decoded) == 1 for _, decoded in later)
    carried.clear()
    video = pipe.run(GenerateRequest("a red ball moves right", seconds=10)).frames
    (first_known, _), *later = carried
    assert first_known == {} and len(later) >= 2  # no image given; then one call a window
    assert all(list(known) == [0] and np.array_equal(known[0], video[0]) for known, _ in later)


def test_storyboard_concatenates_shots(pipe):
    shots = [{"prompt": "a red ball", "seconds": 1}, {"prompt": "a blue square", "seconds": 2}]
    out = pipe.run(GenerateRequest("", storyboard=shots)).frames
    assert len(out) == 9 + 17


def test_a_storyboards_sidecar_gives_the_frames_written_and_from_makes_them_again(tiny_model_dir, tmp_path):
    """The sidecar's frames was the default clip's (17; 1 with -o x.png) whatever the shots made."""
    shots = tmp_path / "shots.json"
    shots.write_text(json.dumps([{"prompt": "a red ball", "seconds": 1}, {"prompt": "a blue square", "seconds": 2}]))
    model = ["--model", str(tiny_model_dir), "-q"]
    out = tmp_path / "story.mp4"
    assert main(["generate", "--storyboard", str(shots), *model, "-o", str(out)]) == 0
    frames = read_video(out)[0]
    record = json.loads(out.with_suffix(".json").read_text())
    assert len(frames) == 9 + 17 == record["request"]["frames"]
    again = tmp_path / "again.mp4"
    assert main(["generate", "--from", str(out.with_suffix(".json")), *model, "-o", str(again)]) == 0
    assert np.array_equal(read_video(again)[0], frames)
    # A record from before gave the default clip's 17: the shots still make the same video.
    old = tmp_path / "old.json"
    old.write_text(json.dumps(record | {"request": record["request"] | {"frames": 17}}))
    assert main(["generate", "--from", str(old), *model, "-o", str(again)]) == 0
    assert np.array_equal(read_video(again)[0], frames)
    stills = tmp_path / "stills.png"  # numbered frames, one per frame of the shots
    assert main(["generate", "--storyboard", str(shots), *model, "-o", str(stills)]) == 0
    recorded = json.loads(stills.with_suffix(".json").read_text())["request"]["frames"]
    assert len(list(tmp_path.glob("stills_*.png"))) == 26 == recorded


def test_a_storyboard_saved_with_a_byte_order_mark_is_read(tmp_path):
    """Windows Notepad starts a UTF-8 file with a byte-order mark: such a storyboard was "not JSON"."""
    from cinegen.inputs import Shot, read_storyboard

    path = tmp_path / "shots.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps([{"prompt": "a red ball", "seconds": 1}]).encode())
    assert read_storyboard(path) == [Shot("a red ball", 1.0)]


@pytest.mark.parametrize("length", [dict(frames=5), dict(seconds=3)])
def test_a_storyboard_refuses_a_length_of_its_own(pipe, length):
    """The shots give the length: frames or seconds beside them were ignored."""
    with pytest.raises(UserError, match="leave out frames and seconds"):
        pipe.validate(GenerateRequest("", storyboard=[{"prompt": "a red ball", "seconds": 1}], **length))


def test_storyboard_seconds_must_be_a_number(pipe):
    """JSON's true is a Python int: a shot of `"seconds": true` ran as 1 s."""
    with pytest.raises(UserError, match="shot 0"):
        pipe.validate(GenerateRequest("", storyboard=[{"prompt": "a red ball", "seconds": True}]))


def test_pixel_mask_to_tokens_keeps_only_untouched_tokens():
    white = torch.zeros(9, 8, 8, dtype=torch.bool)
    white[5, 0, 7] = True  # one pixel in latent frame 2 (video frames 5..8), token (0, 1) at cell 4
    keep = pixel_mask_to_tokens(white, 4, 4)
    assert keep.shape == (3, 2, 2)
    assert keep[2, 0, 1] == 0 and keep.sum() == 11


def test_1080_is_rendered_at_1088_and_cropped(pipe):
    g = pipe.geometry(GenerateRequest("x", width=1920, height=1080, frames=1))
    assert (g.width, g.height, g.render) == (1920, 1080, (1920, 1088))
    out = pipe.run(GenerateRequest("x", width=40, height=24, frames=1)).frames  # 40 = 5·8
    assert out.shape == (1, 24, 40, 3)


def test_draft_size_is_half_with_an_80_px_floor():
    assert draft_size(192, 192, 16) == (96, 96)
    assert draft_size(1920, 1080, 16) == (960, 544)
    assert draft_size(96, 96, 16) == (80, 80)  # half would be 48
    assert draft_size(160, 128, 16) == (96, 80)
    assert draft_size(144, 80, 16) == (144, 80)  # the short side is at the floor already
    assert draft_size(48, 48, 16) == (48, 48)  # never larger than the final


def test_draft_then_finalize_cli(tiny_model_dir, tmp_path, capsys):
    draft = tmp_path / "draft.mp4"
    assert (
        main(
            [
                "generate",
                "a red ball",
                "--draft",
                "--width",
                "160",
                "--height",
                "96",
                "--frames",
                "5",
                "--model",
                str(tiny_model_dir),
                "-o",
                str(draft),
                "-q",
            ]
        )
        == 0
    )
    assert read_video(draft)[0].shape == (5, 80, 128, 3)  # short side 80, not half (48); aspect kept
    record = json.loads(draft.with_suffix(".json").read_text())
    assert (tmp_path / record["draft"]["latent"]).is_file()
    final = tmp_path / "final.mp4"
    assert (
        main(
            [
                "finalize",
                str(draft.with_suffix(".json")),
                "--model",
                str(tiny_model_dir),
                "-o",
                str(final),
                "-q",
            ]
        )
        == 0
    )
    assert read_video(final)[0].shape == (5, 96, 160, 3)
    assert json.loads(final.with_suffix(".json").read_text())["finalized_from_draft"]["anchor_until"] == 1.0
    bad = tmp_path / "bad.mp4"
    args = ["finalize", str(draft.with_suffix(".json")), "--anchor-until", "1.5", "--model", str(tiny_model_dir)]
    assert main([*args, "-o", str(bad), "-q"]) == 2
    assert "anchor-until 1.5 is outside [0, 1]" in capsys.readouterr().err and not bad.exists()


def _png_frames(path):
    from cinegen.media import read_image

    return np.stack([read_image(p) for p in sorted(path.parent.glob(f"{path.stem}_[0-9][0-9][0-9][0-9].png"))])


def test_from_a_draft_makes_the_draft_again_with_its_state(tiny_model_dir, tmp_path):
    """`--from draft.json` made the draft's frames but no state: the new sidecar had no "draft", and
    `finalize` refused it as "not the JSON of a draft"."""
    common = ["--model", str(tiny_model_dir), "--device", "cpu", "-q"]
    assert main(["generate", "a red ball", "--draft", "--frames", "5", "-o", str(tmp_path / "d.png"), *common]) == 0
    assert main(["generate", "--from", str(tmp_path / "d.json"), "-o", str(tmp_path / "again.png"), *common]) == 0
    assert np.array_equal(_png_frames(tmp_path / "again.png"), _png_frames(tmp_path / "d.png"))
    record = json.loads((tmp_path / "again.json").read_text())
    assert record["draft"]["latent"] == "again.latent.safetensors"
    assert record["draft"]["final"] == json.loads((tmp_path / "d.json").read_text())["draft"]["final"]
    for name in ("d", "again"):
        assert main(["finalize", str(tmp_path / f"{name}.json"), "-o", str(tmp_path / f"final_{name}.png"), *common]) == 0
    assert np.array_equal(_png_frames(tmp_path / "final_again.png"), _png_frames(tmp_path / "final_d.png"))


@pytest.mark.parametrize("record", ["new", "without_draft_request", "without_anchor"])
def test_from_a_final_makes_the_same_final(tiny_model_dir, clips, tmp_path, record):
    """`--from final.json` replayed the final's request as a plain generation at full size: another
    video. The final's sidecar keeps its draft's request; an older one, without it, gets the draft
    that generate --draft makes of the final's request. One from before the anchor (e62573c) records
    no anchor_until: it was made without one (1), and was refused as "anchor_until None"."""
    common = ["--model", str(tiny_model_dir), "--device", "cpu", "-q"]
    assert main(["generate", "a red ball", "--draft", "--frames", "5", "--image", str(clips / "img.png"),
                 "-o", str(tmp_path / "d.mp4"), *common]) == 0
    anchor_until = 1.0 if record == "without_anchor" else 0.5
    assert main(["finalize", str(tmp_path / "d.json"), "--strength", "0.8", "--anchor-until", str(anchor_until),
                 "-o", str(tmp_path / "final.png"), *common]) == 0
    final = json.loads((tmp_path / "final.json").read_text())
    assert final["finalized_from_draft"]["draft_request"] == json.loads((tmp_path / "d.json").read_text())["request"]
    if record != "new":
        del final["finalized_from_draft"]["draft_request"]
    if record == "without_anchor":
        del final["finalized_from_draft"]["anchor_until"]
    (tmp_path / "final.json").write_text(json.dumps(final))
    assert main(["generate", "--from", str(tmp_path / "final.json"), "-o", str(tmp_path / "again.png"), *common]) == 0
    assert np.array_equal(_png_frames(tmp_path / "again.png"), _png_frames(tmp_path / "final.png"))
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["finalized_from_draft"]["strength"] == 0.8
    assert again["finalized_from_draft"]["anchor_until"] == anchor_until


def test_from_refuses_an_input_that_changed_or_is_not_there(tiny_model_dir, clips, tmp_path, monkeypatch, capsys):
    """`extend clip.mp4 -o clip.mp4` replaces its own source: `--from clip.json` then extended the
    extended clip, silently another video. Run in another folder, a relative input was "input file
    'clip.mp4' does not exist", with no hint why."""
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copy(clips / "a.mp4", "clip.mp4")
    common = ["--model", str(tiny_model_dir), "--device", "cpu", "-q"]
    assert main(["extend", "clip.mp4", "more", "--seconds", "1", "-o", "clip.mp4", *common]) == 0
    record = json.loads((tmp_path / "clip.json").read_text())
    assert record["request"]["video"] == "clip.mp4" and len(record["inputs_sha256"]["video"]) == 64
    capsys.readouterr()
    (tmp_path / "out").mkdir()
    assert main(["generate", "--from", "clip.json", "-o", "out/again.mp4", *common]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["cinegen: error: --video 'clip.mp4' is not the file 'clip.json' was made from (its sha256 differs: "
                   "it changed since, and the output would too); put that file back, or make a new output"]
    monkeypatch.chdir(tmp_path / "out")
    assert main(["generate", "--from", "../clip.json", "-o", "again.mp4", *common]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "was made from --video 'clip.mp4', which does not exist here" in err[0]
    assert list((tmp_path / "out").iterdir()) == []


def test_finalize_refuses_a_draft_whose_image_changed(tiny_model_dir, tmp_path, capsys):
    """finalize made the final from the draft's latent and the --image as it is now: `generate --from
    final.json` then made the draft from the new image, another video than the final (14 levels
    apart), without an error."""
    common = ["--model", str(tiny_model_dir), "--device", "cpu", "-q"]
    image = tmp_path / "img.png"
    write_video(image, np.full((32, 32, 3), 200, np.uint8), 8)
    assert main(["generate", "a red ball", "--draft", "--frames", "5", "--image", str(image),
                 "-o", str(tmp_path / "d.mp4"), *common]) == 0
    write_video(image, np.full((32, 32, 3), 30, np.uint8), 8)
    capsys.readouterr()
    assert main(["finalize", str(tmp_path / "d.json"), "-o", str(tmp_path / "final.mp4"), *common]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--image {str(image)!r} is not the file" in err[0]
    assert not (tmp_path / "final.mp4").exists()


def test_a_batch_whose_output_is_its_own_input_extends_the_clip_given(tiny_model_dir, clips, tmp_path):
    """Each variation of a batch reads its inputs again: `extend clip_0.mp4 --batch 2 -o clip.mp4`
    wrote clip_0.mp4 before the second variation read it, which then extended the extended clip
    (9 + 8 + 8 frames) and recorded the digest of the clip given."""
    import shutil

    shutil.copy(clips / "a.mp4", tmp_path / "clip_0.mp4")
    common = ["--model", str(tiny_model_dir), "--device", "cpu", "-q"]
    assert main(["extend", str(tmp_path / "clip_0.mp4"), "more", "--frames", "9", "--batch", "2",
                 "-o", str(tmp_path / "clip.mp4"), *common]) == 0
    assert [len(read_video(tmp_path / f"clip_{i}.mp4")[0]) for i in range(2)] == [9 + 8, 9 + 8]


def test_finalize_of_an_image_to_video_draft_keeps_the_given_images(pipe, clips):
    """finalize re-noised the whole draft: the final no longer started on --image (nor ended on
    --last-image), which the draft and every image -> video output do exactly."""
    image = src(clips, "img.png")[0]
    req = GenerateRequest("a red ball", image=str(clips / "img.png"), last_image=str(clips / "img.png"), frames=9)
    final = pipe.finalize(req, pipe.draft(req).latents).frames
    assert np.array_equal(final[0], image) and np.array_equal(final[-1], image)


@pytest.mark.parametrize("case", ["no_final_size", "text_strength", "nan_strength", "final_smaller_than_draft"])
def test_finalize_a_broken_draft_one_line_exit_2_no_file(tiny_model_dir, tmp_path, capsys, case):
    """A draft record without its final size gave KeyError, one with a strength of text TypeError,
    --strength nan ValueError (in the step count, before the canvas checks it), and a final smaller
    than the draft an AssertionError."""
    draft = tmp_path / "draft.mp4"
    model = ["--model", str(tiny_model_dir), "-q"]
    assert main(["generate", "a red ball", "--draft", "--frames", "5", "-o", str(draft), *model]) == 0
    record = json.loads(draft.with_suffix(".json").read_text())
    extra = []
    if case == "no_final_size":
        del record["draft"]["final"]["height"]
    elif case == "text_strength":
        record["draft"]["strength"] = "high"
    elif case == "nan_strength":
        extra = ["--strength", "nan"]
    else:
        record["draft"]["final"].update(width=16, height=16)
        extra = ["--anchor-until", "0.5"]
    (tmp_path / "edited.json").write_text(json.dumps(record))
    capsys.readouterr()
    out = tmp_path / "out"
    out.mkdir()
    assert main(["finalize", str(tmp_path / "edited.json"), *extra, "-o", str(out / "final.mp4"), *model]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cinegen: error:"), lines
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("name", ["edit", "extend", "connect", "loop"])
def test_task_commands_write_outputs(tiny_model_dir, clips, tmp_path, name):
    args = {
        "edit": ["edit", str(clips / "a.mp4"), "a blue ball", "--strength", "0.5"],
        "extend": ["extend", str(clips / "a.mp4"), "a red ball", "--seconds", "1", "--backward"],
        "connect": ["connect", str(clips / "a.mp4"), str(clips / "b.mp4"), "x", "--seconds", "1"],
        "loop": ["loop", "--video", str(clips / "a.mp4")],
    }[name]
    out = tmp_path / "out.mp4"
    assert main([*args, "--model", str(tiny_model_dir), "-o", str(out), "-q"]) == 0
    assert read_video(out)[0].shape[1:] == (32, 32, 3)
    assert json.loads(out.with_suffix(".json").read_text())["request"]["task"] == name


def _bad_inputs(clips, tmp_path):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00 ftypisom not really a video")
    short = tmp_path / "short.mp4"
    write_video(short, np.zeros((3, 32, 32, 3), np.uint8), 8)
    small_mask = tmp_path / "mask.png"
    write_video(small_mask, np.full((16, 16, 3), 255, np.uint8), 8)
    long_mask = tmp_path / "long_mask.mp4"  # a.mp4 has 9 frames: the mask was cut to them, silently
    write_video(long_mask, np.full((18, 32, 32, 3), 255, np.uint8), 16)
    shots = tmp_path / "shots.json"
    shots.write_text(json.dumps([{"prompt": "a red ball", "seconds": 1}]))
    # A yellow mask: its brightness decided, so yellow was regenerated (and red, mean 85, kept).
    colored = np.zeros((32, 32, 3), np.uint8)
    colored[:16, :, :2] = 255
    colored_mask = tmp_path / "colored_mask.png"
    write_video(colored_mask, colored, 8)
    deep = tmp_path / "deep.json"  # nested too deep for Python's parser: a RecursionError traceback
    deep.write_text("[" * 100_000 + "]" * 100_000)
    # a.mp4 as a GIF cut after 7 of its 9 frames (no trailer): it loaded as a 7-frame clip, or a whole image.
    gif = write_video(tmp_path / "a.gif", src(clips, "a.mp4"), 8).read_bytes()
    cut_gif = tmp_path / "cut.gif"
    cut_gif.write_bytes(gif[: [m.start() for m in re.finditer(rb"\x21\xf9\x04", gif)][7]])
    mask = write_video(tmp_path / "mask.gif", np.full((10, 32, 32, 3), 255, np.uint8), 8).read_bytes()
    cut_mask = tmp_path / "cut_mask.gif"  # 9 of 10 frames: taken as a mask of a.mp4's 9
    cut_mask.write_bytes(mask[: [m.start() for m in re.finditer(rb"\x21\xf9\x04", mask)][9]])
    a = str(clips / "a.mp4")
    return {
        "aspect": ["generate", "x", "--image", str(clips / "wide.png"), "--width", "32", "--height", "32"],
        "short": ["extend", str(short), "x"],
        "extend_nothing": ["extend", a, "x", "--frames", "1"],  # wrote the clip unchanged
        "mask": ["edit", a, "x", "--mask", str(small_mask)],
        "long_mask": ["edit", a, "x", "--mask", str(long_mask)],
        "corrupt": ["edit", str(corrupt), "x"],
        "four_hours": ["generate", "x", "--seconds", str(4 * 3600)],
        "strength": ["edit", a, "x", "--strength", "1.5"],
        "source_prompt": ["edit", a, "x", "--source-prompt", " "],  # was a plain edit, silently
        "storyboard": ["generate", "--storyboard", str(corrupt)],
        # The shots give the lengths and prompts: these were ignored, and recorded in the sidecar.
        "storyboard_seconds": ["generate", "--storyboard", str(shots), "--seconds", "5"],
        "storyboard_prompt": ["generate", "a blue ball", "--storyboard", str(shots)],
        "finalize": ["finalize", str(corrupt)],
        "colored_mask": ["edit", a, "x", "--mask", str(colored_mask)],
        "joined_sizes": ["extend", str(_joined_sizes(tmp_path / "joined.ts")), "x"],
        "deep_storyboard": ["generate", "--storyboard", str(deep)],
        "deep_from": ["generate", "--from", str(deep)],
        "deep_draft": ["finalize", str(deep)],
        "cut_gif_edit": ["edit", str(cut_gif), "x"],
        "cut_gif_extend": ["extend", str(cut_gif), "x"],
        "cut_gif_loop": ["loop", "--video", str(cut_gif)],
        "cut_gif_image": ["generate", "x", "--image", str(cut_gif)],
        "cut_gif_mask": ["edit", a, "x", "--mask", str(cut_mask)],
    }


def _joined_sizes(path):
    """Two MPEG-TS clips joined byte for byte, 32x32 then 48x32: one stream that changes size (the
    frames did not stack: a ValueError traceback)."""
    import av

    parts = []
    for i, (w, h) in enumerate([(32, 32), (48, 32)]):
        part = path.with_name(f"part{i}.ts")
        with av.open(str(part), "w", format="mpegts") as container:
            stream = container.add_stream("libx264", rate=8)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            for k in range(5):
                frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), 40 * k, np.uint8), format="rgb24")
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
        parts.append(part.read_bytes())
    path.write_bytes(b"".join(parts))
    return path


@pytest.mark.parametrize(
    "case",
    ["aspect", "short", "extend_nothing", "mask", "long_mask", "corrupt", "four_hours", "strength", "source_prompt", "storyboard",
     "storyboard_seconds", "storyboard_prompt", "finalize", "colored_mask", "joined_sizes", "deep_storyboard",
     "deep_from", "deep_draft", "cut_gif_edit", "cut_gif_extend", "cut_gif_loop", "cut_gif_image", "cut_gif_mask"],
)
def test_bad_input_one_line_exit_2_nothing_written(tiny_model_dir, clips, tmp_path, capsys, case):
    inputs = tmp_path / "in"
    inputs.mkdir()
    args = _bad_inputs(clips, inputs)[case]
    outdir = tmp_path / "out"
    outdir.mkdir()
    assert main([*args, "--model", str(tiny_model_dir), "-o", str(outdir / "x.mp4")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cinegen: error:"), lines
    assert list(outdir.iterdir()) == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(task="connect", video="a.mp4", video_b="b.mp4", frames=1),
         "a transition of 1 frame is too short; at least 5 frames (0.6 s at 8 fps)"),
        (dict(task="connect", video="a.mp4", video_b="b.mp4", seconds=30),
         "a transition of 240 frames is too long; at most 51 frames (6.4 s at 8 fps)"),
        (dict(task="loop", seconds=30), "loops are at most 61 frames (7.6 s at 8 fps)"),
        (dict(task="loop", frames=1), "a loop of 1 frame(s) is too short; at least 5 frames (0.6 s at 8 fps)"),
        (dict(task="loop", video="a.mp4", frames=1),
         "a loop of 1 frame(s) is too short; at least 5 frames (0.6 s at 8 fps)"),
        (dict(last_image="img.png", seconds=30), "--last-image works for clips up to 4.12 s at 8 fps"),
        (dict(image="img.png", last_image="img.png", frames=5), "--last-image needs a clip of at least 9 frames"),
    ],
)
def test_lengths_a_task_cannot_make_are_refused_in_validation(pipe, clips, fields, message):
    """These were checked in the task code: after validation, once the inputs were encoded and the
    progress bar ran (connect --frames 1 then said "2 + 1 known latent frames leave nothing to generate")."""
    files = {k: str(clips / v) for k, v in fields.items() if k in ("video", "video_b", "image", "last_image")}
    with pytest.raises(UserError) as error:
        pipe.validate(GenerateRequest("x", **fields | files))
    assert str(error.value) == message


def test_server_task_fields_run_through_pipeline_run(pipe, clips):
    """The server sends task + file fields of GenerateRequest and calls Pipeline.run."""
    for task, extra in (("edit", {"strength": 0.6}), ("extend", {}), ("loop", {})):
        out = pipe.run(
            GenerateRequest("a blue ball", task=task, video=str(clips / "a.mp4"), seconds=1, **extra)
        )
        assert out.frames.ndim == 4


def test_carry_detail_restores_known_frames_and_leaves_moved_pixels_alone():
    from cinegen.pipeline import carry_detail

    rng = np.random.default_rng(0)
    decoded = np.full((5, 8, 8, 3), 100, np.uint8)
    decoded[3:, :2] = 250  # something arrives in the top rows of the last frames
    given = rng.integers(90, 110, (8, 8, 3)).astype(np.uint8)  # the detail the VAE lost
    out = carry_detail(decoded, {0: given})
    assert np.array_equal(out[0], given)
    assert np.array_equal(out[4, 2:], given[2:])  # the unchanged surface takes the detail
    assert np.array_equal(out[4, :2], decoded[4, :2])  # the new content is left as generated
    both = carry_detail(decoded, {0: given, 4: decoded[4]})
    assert np.array_equal(both[0], given) and np.array_equal(both[4], decoded[4])
    assert carry_detail(decoded, {}) is decoded
