from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cinegen.canvas import Canvas, finish_draft, keep_frames, loop, random_training_mask, text_to_video
from cinegen.flow import add_noise, flow_loss, shift_time, timesteps
from cinegen.sampling import Guidance, guided_velocity, sample


@dataclass
class Ctx:
    scale: torch.Tensor  # (B,)


class LinearField:
    """v = scale·x + t_tokens (upsampled): simple, input-dependent, records its calls."""

    def __init__(self):
        self.calls = []

    def velocity(self, latent, t_tokens, context):
        self.calls.append((latent.clone(), t_tokens.clone()))
        t = t_tokens.repeat_interleave(2, -2).repeat_interleave(2, -1)[:, None]
        return context.scale.view(-1, 1, 1, 1, 1) * latent + t


def test_noising_endpoints_and_velocity_target():
    x0, eps = torch.randn(2, 3, 4, 4, 4), torch.randn(2, 3, 4, 4, 4)
    torch.testing.assert_close(add_noise(x0, eps, torch.tensor(0.0)), x0)
    torch.testing.assert_close(add_noise(x0, eps, torch.tensor(1.0)), eps)
    # The exact velocity has zero loss, on the weighted cells only.
    weight = torch.zeros(2, 1, 4, 4, 4)
    weight[:, :, 1:] = 1
    assert flow_loss(eps - x0, x0, eps, weight) == 0
    bad = eps - x0
    bad[:, :, 0] += 5  # error only where weight is 0
    assert flow_loss(bad, x0, eps, weight) == 0


def test_schedule_is_decreasing_and_shift_keeps_ends():
    t = timesteps(10, shift=3.0)
    assert t[0] == 1 and t[-1] == 0 and (t[1:] < t[:-1]).all()
    assert shift_time(torch.tensor(0.5), 3.0) > 0.5


def test_euler_step_is_x_plus_dt_v_with_per_token_t():
    field = LinearField()
    canvas = text_to_video((2, 4, 4))
    noise = torch.randn(1, 3, 2, 4, 4)
    ctx = Ctx(torch.tensor([0.5]))
    out = sample(field, canvas, noise, ctx, ctx, steps=1)
    expected = noise + (0.0 - 1.0) * (0.5 * noise + 1.0)
    torch.testing.assert_close(out, expected)


def test_guidance_one_is_the_conditional_output():
    field = LinearField()
    canvas = text_to_video((2, 4, 4))
    x = torch.randn(1, 3, 2, 4, 4)
    cond, uncond = Ctx(torch.tensor([0.7])), Ctx(torch.tensor([-0.2]))
    v = guided_velocity(field, canvas, x, 0.5, None, cond, uncond, Guidance(text=1.0))
    torch.testing.assert_close(v, 0.7 * x + 0.5)
    v3 = guided_velocity(field, canvas, x, 0.5, None, cond, uncond, Guidance(text=3.0))
    torch.testing.assert_close(v3, (-0.2 * x + 0.5) + 3.0 * (0.9 * x))


def test_guidance_interval_guides_only_at_high_noise():
    field = LinearField()
    canvas = text_to_video((2, 4, 4))
    noise = torch.randn(1, 3, 2, 4, 4)
    cond, uncond = Ctx(torch.tensor([0.7])), Ctx(torch.tensor([-0.2]))
    sample(field, canvas, noise, cond, uncond, steps=10, guidance=Guidance(text=4.0, min_t=0.45))
    # Steps at t = 1.0 .. 0.5 run both branches (batch 2); t = 0.4 .. 0.1 only the conditional one.
    t_of_call = [float(t.max()) for _, t in field.calls]
    assert [len(x) for x, _ in field.calls] == [2 if t >= 0.45 else 1 for t in t_of_call]
    assert [len(x) for x, _ in field.calls] == [2] * 6 + [1] * 4
    x = torch.randn(1, 3, 2, 4, 4)
    below = guided_velocity(field, canvas, x, 0.3, None, cond, uncond, Guidance(text=4.0, min_t=0.45))
    torch.testing.assert_close(below, 0.7 * x + 0.3)  # the conditional velocity


def test_known_frames_are_kept_exactly_and_carry_t_zero():
    field = LinearField()
    known = torch.randn(3, 3, 4, 4)
    canvas = keep_frames((3, 4, 4), known[None][0], [0])
    out = sample(field, canvas, torch.randn(1, 3, 3, 4, 4), Ctx(torch.tensor([0.3])), Ctx(torch.tensor([0.3])),
                 steps=4, guidance=Guidance(text=1.0))
    torch.testing.assert_close(out[0, :, 0], known[:, 0])
    for latent, t_tokens in field.calls:
        assert (t_tokens[:, 0] == 0).all() and (t_tokens[:, 1:] > 0).all()
        torch.testing.assert_close(latent[0, :, 0], known[:, 0])


def test_noisy_known_frames_are_seen_at_t_floor_and_come_back_as_given():
    field = LinearField()
    known = torch.randn(3, 3, 4, 4)
    canvas = keep_frames((3, 4, 4), known, [0], t_floor=0.2)
    noise = torch.randn(1, 3, 3, 4, 4)
    out = sample(field, canvas, noise, Ctx(torch.tensor([0.3])), Ctx(torch.tensor([0.3])), steps=4)
    torch.testing.assert_close(out[0, :, 0], known[:, 0])
    for latent, t_tokens in field.calls:
        assert torch.allclose(t_tokens[:, 0], torch.tensor(0.2))
        torch.testing.assert_close(latent[0, :, 0], add_noise(known, noise[0], 0.2)[:, 0])


def test_loop_rolls_the_time_axis_and_undoes_it():
    """With a field that is equivariant to time shifts, wrapping changes nothing."""
    field = LinearField()
    noise = torch.randn(1, 3, 4, 4, 4)
    ctx = Ctx(torch.tensor([0.4]))
    plain = sample(field, text_to_video((4, 4, 4)), noise, ctx, ctx, steps=5)
    wrapped = sample(field, loop((4, 4, 4)), noise, ctx, ctx, steps=5)
    torch.testing.assert_close(plain, wrapped)


def test_edit_starts_from_the_noised_source():
    field = LinearField()
    source = torch.randn(3, 2, 4, 4)
    canvas = Canvas((2, 4, 4), init=source, strength=0.25)
    sample(field, canvas, torch.zeros(1, 3, 2, 4, 4), Ctx(torch.tensor([0.0])), Ctx(torch.tensor([0.0])), steps=2)
    first_latent, first_t = field.calls[0]
    torch.testing.assert_close(first_latent[0], 0.75 * source)
    assert torch.allclose(first_t, torch.tensor(0.25))


class PointMass:
    """The exact velocity field of data that is one clip `x*`: v = (x − x*) / t."""

    def __init__(self, target: torch.Tensor):
        self.target = target

    def velocity(self, latent, t_tokens, context):
        t = t_tokens.repeat_interleave(2, -2).repeat_interleave(2, -1)[:, None]
        return (latent - self.target) / t


def test_anchor_keeps_the_drafts_low_frequencies_and_the_models_detail():
    """Draft → final: the result downsampled is the draft, its detail above the draft's resolution
    is what the model draws; unanchored, the model's own low frequencies win."""
    torch.manual_seed(0)
    low = lambda x, size: F.interpolate(x, size=size, mode="area")  # noqa: E731
    up = lambda x, size: F.interpolate(x, size=size, mode="trilinear", align_corners=False)  # noqa: E731
    target = torch.randn(1, 3, 2, 8, 8)
    draft = up(torch.randn(1, 3, 2, 2, 2), (2, 4, 4))[0]  # smooth at its own size, as a decoded draft is
    field, noise, ctx = PointMass(target), torch.randn(1, 3, 2, 8, 8), Ctx(torch.tensor([0.0]))
    start = up(draft[None], (2, 8, 8))[0]
    plain = sample(field, Canvas((2, 8, 8), init=start, strength=0.6), noise, ctx, ctx, steps=8)
    anchored = sample(field, finish_draft((2, 8, 8), draft, 0.6), noise, ctx, ctx, steps=8)
    torch.testing.assert_close(plain, target, atol=1e-4, rtol=0)
    off = sample(field, finish_draft((2, 8, 8), draft, 0.6, anchor_until=1.0), noise, ctx, ctx, steps=8)
    torch.testing.assert_close(off, plain)
    # Area-down after trilinear-up is a mild blur, not the identity, so the match is close, not exact.
    off_draft = (low(anchored, (2, 4, 4))[0] - draft).abs().mean()
    assert off_draft < 0.3 * (low(plain, (2, 4, 4))[0] - draft).abs().mean()
    detail = lambda x: x - up(low(x, (2, 4, 4)), (2, 8, 8))  # noqa: E731
    assert (detail(anchored) - detail(target)).abs().mean() < 0.3 * detail(target).abs().mean()


def test_training_masks_leave_something_to_generate():
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        grid = (int(torch.randint(1, 6, (1,), generator=g)), 3, 4)
        mask = random_training_mask(grid, g)
        assert mask.shape == grid and set(mask.unique().tolist()) <= {0.0, 1.0}
        assert (mask == 0).any()
