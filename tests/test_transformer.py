import torch

from cinegen.config import DenoiserConfig
from cinegen.models.transformer import SpacetimeDiT, apply_rope, rope_frequencies


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
