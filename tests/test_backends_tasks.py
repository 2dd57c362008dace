"""Every canvas task runs on each tiny open family and keeps its invariants.

The tasks are canvases (cinegen.canvas) run by the one sampler; here on Wan (RePaint: one t
per sample), LTX-Video (per-token t) and CogVideoX (v-prediction mapped to flow, RePaint), and
on Wan / CogVideoX image-to-video checkpoints (the known frames on extra input channels).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from cinegen.backends.tiny import save_tiny  # noqa: E402
from cinegen.canvas import Canvas, edit, finish_draft, keep_frames, keep_region, loop, text_to_video  # noqa: E402
from cinegen.errors import UserError  # noqa: E402
from cinegen.pipeline import GenerateRequest, Pipeline  # noqa: E402
from cinegen.sampling import Guidance, sample  # noqa: E402

STEPS = 3


@pytest.fixture(scope="module", params=["wan", "ltx", "cogvideox", "wan-i2v", "cogvideox-i2v"])
def pipe(request, tmp_path_factory) -> Pipeline:
    return Pipeline.load(
        save_tiny(request.param, tmp_path_factory.mktemp(request.param)), device="cpu", dtype="fp32"
    )


def latent_shape(pipe: Pipeline, frames: int, size: int = 32) -> tuple[int, int, int]:
    b = pipe.backend
    return (1 + (frames - 1) // b.time_factor, size // b.spatial_factor, size // b.spatial_factor)


def run(
    pipe: Pipeline, canvas: Canvas, seed: int = 0, guidance: float = 3.0, steps: int = STEPS
) -> torch.Tensor:
    b = pipe.backend
    noise = torch.randn(1, b.latent_channels, *canvas.shape, generator=torch.Generator().manual_seed(seed))
    cond, uncond = b.encode_text(["a red ball rolls left"], 8.0), b.encode_text([""], 8.0)
    out = sample(b, canvas, noise, cond, uncond, steps=steps, guidance=Guidance(text=guidance))
    assert out.shape == noise.shape and torch.isfinite(out).all()
    return out


def source(pipe: Pipeline, shape, seed: int = 7) -> torch.Tensor:
    return torch.randn(pipe.backend.latent_channels, *shape, generator=torch.Generator().manual_seed(seed))


def test_geometry_follows_the_family(pipe):
    b = pipe.backend
    frames = 1 + 2 * b.time_factor  # 4k+1 (Wan, CogVideoX) or 8k+1 (LTX-Video)
    side = b.size_multiple * max(2, -(-32 // b.size_multiple))  # a multiple of the family's size step
    g = pipe.validate(GenerateRequest(prompt="a cat", width=side, height=side, frames=frames))
    assert g.latent == (3, side // b.spatial_factor, side // b.spatial_factor)
    with pytest.raises(UserError, match="frames"):
        pipe.validate(GenerateRequest(prompt="a cat", frames=frames + 1, width=g.width, height=g.height))


def test_text_to_video_and_image_decode_to_the_requested_size(pipe):
    b = pipe.backend
    side = max(32, b.size_multiple)
    for frames in (1, 1 + b.time_factor):
        result = pipe.run(
            GenerateRequest(prompt="a dog runs", width=side, height=side, frames=frames, steps=2)
        )
        assert result.videos[0].shape == (frames, side, side, 3)


def test_image_to_video_and_extend_keep_the_given_frames(pipe):
    shape = latent_shape(pipe, 9)
    src = source(pipe, shape)
    for frames in ([0], [0, 1], [shape[0] - 1]):  # image→video, extend forward, extend backward
        out = run(pipe, keep_frames(shape, src, frames, patch=pipe.backend.patch))
        assert torch.equal(out[0][:, frames], src[:, frames])
        free = [f for f in range(shape[0]) if f not in frames]
        assert not torch.allclose(out[0][:, free], src[:, free], atol=1e-2)


def test_image_to_video_checkpoints_take_the_known_frames_on_channels(pipe):
    """Wan / CogVideoX I2V: the known latent frames reach the denoiser as condition channels (Wan:
    with mask channels), the generated frames follow them, and condition guidance runs."""
    b = pipe.backend
    if not b.condition_channels:
        pytest.skip("a text-to-video checkpoint: the canvas goes in by per-token t or RePaint")
    shape = latent_shape(pipe, 9)
    src = source(pipe, shape)
    given = b.prepare_condition(keep_frames(shape, src, [0], patch=b.patch), src[None], 1)
    blank = b.prepare_condition(text_to_video(shape, patch=b.patch), None, 1)
    c = b.latent_channels
    assert given.channels.shape[1] + c == b.transformer.config.in_channels
    assert torch.equal(given.channels[0, -c:, 0], src[:, 0])  # the known frame, as it is
    if given.channels.shape[1] > c:  # Wan: mask channels, 1 on the known frame only
        mask = given.channels[0, :-c]
        assert bool((mask[:, 0] == 1).all()) and bool((mask[:, 1:] == 0).all())
        assert bool((blank.channels[0, :-c] == 0).all())
    changed = src.clone()
    changed[:, 0] = -src[:, 0]
    outs = [run(pipe, keep_frames(shape, s, [0], patch=b.patch)) for s in (src, changed)]
    assert not torch.allclose(outs[0][0][:, 1:], outs[1][0][:, 1:], atol=1e-4)
    noise = torch.randn(1, c, *shape, generator=torch.Generator().manual_seed(0))
    ctx = b.encode_text(["a red ball rolls left"], 8.0)
    canvas = keep_frames(shape, src, [0], patch=b.patch)
    out = sample(b, canvas, noise, ctx, ctx, steps=2, guidance=Guidance(text=1.0, condition=2.0))
    assert torch.equal(out[0][:, 0], src[:, 0]) and torch.isfinite(out).all()


def test_connect_keeps_both_ends(pipe):
    shape = latent_shape(pipe, 9)
    src = source(pipe, shape)
    out = run(pipe, keep_frames(shape, src, [0, shape[0] - 1], patch=pipe.backend.patch))
    assert torch.equal(out[0][:, [0, -1]], src[:, [0, -1]])


def test_region_edit_keeps_the_region_exactly(pipe):
    shape = latent_shape(pipe, 5)
    p = pipe.backend.patch
    region = torch.zeros(shape[0], shape[1] // p, shape[2] // p)
    region[:, :, : max(1, region.shape[2] // 2)] = 1  # keep the left half
    src = source(pipe, shape)
    canvas = keep_region(shape, src, region, patch=p)
    out = run(pipe, canvas)
    keep = canvas.cell_mask().bool().expand_as(src)
    assert torch.equal(out[0][keep], src[keep])
    assert not torch.allclose(out[0][~keep], src[~keep], atol=1e-2)


def test_sdedit_stays_closer_to_the_source_at_low_strength(pipe):
    shape = latent_shape(pipe, 5)
    src = source(pipe, shape)
    weak = run(pipe, edit(shape, src, 0.3, patch=pipe.backend.patch))
    strong = run(pipe, edit(shape, src, 1.0, patch=pipe.backend.patch))
    assert (weak[0] - src).abs().mean() < (strong[0] - src).abs().mean()


def test_loop_runs_on_a_circular_time_axis(pipe):
    shape = latent_shape(pipe, 9)
    p = pipe.backend.patch
    looped = run(pipe, loop(shape, patch=p))
    plain = run(pipe, text_to_video(shape, patch=p))
    assert looped.shape == plain.shape
    assert not torch.allclose(looped, plain)  # the roll is applied: the seam moves every step


def test_long_video_windows_share_their_overlap(pipe):
    """Window 2 is conditioned on window 1's last latent frame: the overlap is identical."""
    shape = latent_shape(pipe, 9)
    p = pipe.backend.patch
    first = run(pipe, text_to_video(shape, patch=p))[0]
    known = torch.zeros_like(first)
    known[:, 0] = first[:, -1]
    second = run(pipe, keep_frames(shape, known, [0], patch=p), seed=1)[0]
    assert torch.equal(second[:, 0], first[:, -1])
    video = torch.cat([first, second[:, 1:]], dim=1)
    assert video.shape[1] == 2 * shape[0] - 1


def test_draft_then_final(pipe):
    """Draft at half size, upsample the latent, re-noise to t = 0.6 and finish at full size, anchored
    to the draft."""
    b = pipe.backend
    small = latent_shape(pipe, 5, size=max(32, b.size_multiple))
    draft = run(pipe, text_to_video(small, patch=b.patch), steps=2)
    full = (small[0], small[1] * 2, small[2] * 2)
    final = run(pipe, finish_draft(full, draft[0], 0.6, patch=b.patch), steps=2)
    assert final.shape[2:] == full


def test_guidance_one_skips_the_unconditional_pass(pipe):
    b = pipe.backend
    shape = latent_shape(pipe, 5)
    calls = []
    original = b._denoise

    def counting(latent, t_tokens, context, *condition):
        calls.append(latent.shape[0])
        return original(latent, t_tokens, context, *condition)

    b._denoise = counting
    try:
        run(pipe, text_to_video(shape, patch=b.patch), guidance=1.0, steps=2)
        assert calls == [1, 1]
        calls.clear()
        run(pipe, text_to_video(shape, patch=b.patch), guidance=4.0, steps=2)
        assert calls == [2, 2]
    finally:
        b._denoise = original


def write_inputs(tmp_path, side: int, frames: int) -> dict:
    from cinegen.media import write_video

    rng = np.random.default_rng(0)
    clip = (rng.random((frames, side, side, 3)) * 255).astype(np.uint8)
    paths = {"video": tmp_path / "clip.mp4", "image": tmp_path / "first.png", "mask": tmp_path / "mask.png"}
    write_video(paths["video"], clip, 8.0, {})
    write_video(paths["image"], clip[:1], 8.0, {})
    white = np.zeros((1, side, side, 3), np.uint8)
    white[:, :, side // 2 :] = 255
    write_video(paths["mask"], white, 8.0, {})
    return {k: str(v) for k, v in paths.items()}


def run_cases(pipe: Pipeline, cases: dict, side: int, frames: int) -> None:
    base = dict(prompt="a red ball rolls left", width=side, height=side, frames=frames, steps=2, fps=8.0)
    for name, (extra, expected) in cases.items():
        out = pipe.run(GenerateRequest(**(base | extra))).videos[0]
        assert out.shape[1:] == (side, side, 3), name
        if expected is None:
            assert out.shape[0] > frames, name  # the source kept, new frames added
        else:
            assert out.shape[0] == expected, name


def test_every_pipeline_task_runs_end_to_end(pipe, tmp_path):
    """The pipeline's own tasks (what the CLI and the server run) on an open family, lengths right."""
    b = pipe.backend
    side, frames = max(32, b.size_multiple), 1 + 2 * b.time_factor
    p = write_inputs(tmp_path, side, frames)
    cases = {
        "generate": ({}, frames),
        "image": ({"image": p["image"]}, frames),
        "sdedit": ({"task": "edit", "video": p["video"], "strength": 0.5}, frames),
        "extend": ({"task": "extend", "video": p["video"]}, None),
        "connect": ({"task": "connect", "video": p["video"], "video_b": p["video"]}, None),
        "loop": ({"task": "loop"}, b.time_factor * round(frames / b.time_factor)),  # a whole number of latents
        "draft": ({"draft": True}, frames),
    }
    run_cases(pipe, cases, side, frames)
