import pytest
import torch

from cinegen.config import DenoiserConfig
from cinegen.errors import UserError
from cinegen.models.transformer import SpacetimeDiT, apply_rope, rope_frequencies, token_positions


def make(seed=0):
    torch.manual_seed(seed)
    dit = SpacetimeDiT(DenoiserConfig(latent_channels=4, dim=32, depth=2, heads=2, rope_split=(2, 3, 3))).eval()
    for m in (dit.final, dit.final_modulation[1], dit.modulation[1]):
        torch.nn.init.normal_(m.weight, std=0.05)
    return dit


def inputs(b=2, t=3, h=4, w=6):
    return dict(latent=torch.randn(b, 4, t, h, w), text=torch.randn(b, 5, 384),
                text_mask=torch.ones(b, 5, dtype=torch.bool), text_pooled=torch.randn(b, 384),
                fps=torch.full((b,), 8.0))


def test_zero_init_predicts_zero_velocity():
    dit = SpacetimeDiT(DenoiserConfig(latent_channels=4, dim=32, depth=2, heads=2, rope_split=(2, 3, 3)))
    x = inputs()
    assert dit(t=torch.rand(2), **x).abs().max() == 0


def test_any_aspect_and_scalar_equals_constant_per_token_t():
    dit = make()
    for h, w in ((4, 6), (6, 4), (2, 8)):
        x = inputs(h=h, w=w)
        v_scalar = dit(t=torch.tensor([0.3, 0.7]), **x)
        assert v_scalar.shape == x["latent"].shape
        t_tokens = torch.tensor([0.3, 0.7])[:, None, None, None].expand(2, 3, h // 2, w // 2)
        torch.testing.assert_close(dit(t=t_tokens, **x), v_scalar)


def test_per_token_t_changes_only_through_attention():
    """A token's own timestep matters: changing it changes the output there."""
    dit = make()
    x = inputs()
    t = torch.full((2, 3, 2, 3), 0.5)
    t2 = t.clone()
    t2[:, 0] = 0.0
    v1, v2 = dit(t=t, **x), dit(t=t2, **x)
    assert not torch.allclose(v1[:, :, 0], v2[:, :, 0])


def test_padding_text_tokens_are_ignored():
    dit = make()
    x = inputs()
    x["text_mask"][:, 3:] = False
    v1 = dit(t=torch.rand(2).fill_(0.4), **x)
    x["text"][:, 3:] = torch.randn(2, 2, 384)
    torch.testing.assert_close(dit(t=torch.rand(2).fill_(0.4), **x), v1)


def test_rope_is_relative():
    """Rotary attention scores depend on position differences only."""
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(pq, pk):
        cq, sq = rope_frequencies(torch.tensor([pq]), (2, 3, 3), 100.0)
        ck, sk = rope_frequencies(torch.tensor([pk]), (2, 3, 3), 100.0)
        return (apply_rope(q, cq, sq) * apply_rope(k, ck, sk)).sum()

    torch.testing.assert_close(score([1, 2, 3], [0, 0, 0]), score([4, 7, 9], [3, 5, 6]), atol=1e-5, rtol=1e-5)


def test_frames_outside_the_trained_sides_span_the_nearer_end():
    # Trained on shorter sides of 5 and 6 tokens: a frame of 8 x 14 tokens is scaled by 6/8 on
    # both axes (its aspect kept), one of 4 x 7 by 5/4, and 5 x 9 or 6 x 10 keep integer positions.
    big = token_positions((2, 8, 14), side_range=(5, 6)).reshape(2, 8, 14, 3)
    assert torch.allclose(big[0, :, 0, 1], torch.arange(8) * 0.75)
    assert torch.allclose(big[0, 0, :, 2], torch.arange(14) * 0.75)
    assert torch.equal(big[:, 0, 0, 0], torch.tensor([0.0, 1.0]))  # time is never scaled
    small = token_positions((1, 4, 7), side_range=(5, 6)).reshape(4, 7, 3)
    assert torch.allclose(small[:, 0, 1], torch.arange(4) * 1.25)
    assert torch.allclose(small[0, :, 2], torch.arange(7) * 1.25)
    for inside in ((2, 5, 9), (2, 6, 10)):
        assert torch.equal(token_positions(inside, (5, 6)), token_positions(inside))


def test_position_interpolation_changes_only_frames_outside_the_trained_sides():
    dit = make()
    tiny, small, large = inputs(h=2, w=4), inputs(h=4, w=6), inputs(h=8, w=8)  # 1x2, 2x3, 4x4 tokens
    t = torch.full((2,), 0.5)
    before = [dit(**x, t=t) for x in (tiny, small, large)]
    dit.config.rope_side_range = (2, 2)
    after = [dit(**x, t=t) for x in (tiny, small, large)]
    assert torch.equal(before[1], after[1])
    assert not torch.allclose(before[0], after[0], atol=1e-4)
    assert not torch.allclose(before[2], after[2], atol=1e-4)


def test_a_side_range_that_is_not_a_range_is_refused():
    for bad in ((6, 5), (0, 6), (-1, 2)):
        with pytest.raises(UserError, match="rope_side_range"):
            DenoiserConfig(rope_side_range=bad)
    DenoiserConfig(rope_side_range=(5, 6))


def test_widening_keeps_the_output_and_narrowing_undoes_it():
    """`load_narrower` adds channels with zero weight in and out; `narrowed_state` takes them away."""
    narrow = make()
    config = DenoiserConfig(latent_channels=6, dim=32, depth=2, heads=2, rope_split=(2, 3, 3))
    wide = SpacetimeDiT(config).eval()
    wide.load_narrower(narrow.state_dict())
    x = inputs()
    t = torch.rand(2)
    v = narrow(t=t, **x)
    extra = torch.randn(2, 2, *x["latent"].shape[2:])
    v_wide = wide(t=t, **(x | {"latent": torch.cat([x["latent"], extra], dim=1)}))
    torch.testing.assert_close(v_wide[:, :4], v)
    assert v_wide[:, 4:].abs().max() == 0

    torch.nn.init.normal_(wide.patch_embed.weight, std=0.05)  # as if the new channels had trained
    back = make(seed=1)
    back.load_state_dict(wide.narrowed_state(4))
    zeros = torch.zeros_like(extra)
    torch.testing.assert_close(back(t=t, **x), wide(t=t, **(x | {"latent": torch.cat([x["latent"], zeros], 1)}))[:, :4])
