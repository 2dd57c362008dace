import dataclasses

import pytest
import torch

from cinegen.config import MODEL_PRESETS
from cinegen.models.autoencoder import CausalConv3d, CausalVAE


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return CausalVAE(MODEL_PRESETS["test"].autoencoder).eval()


def test_shapes_follow_1_plus_4k(vae):
    video = torch.randn(2, 3, 9, 32, 48)
    z = vae.encode(video)
    assert z.shape == (2, 4, 3, 4, 6)
    assert vae.decode(z).shape == video.shape


def test_frame_zero_is_encoded_alone(vae):
    """Causality: an image encodes exactly as the first frame of any clip that starts with it."""
    clip = torch.randn(1, 3, 9, 32, 32)
    z_clip = vae.encode(clip)
    z_image = vae.encode(clip[:, :, :1])
    torch.testing.assert_close(z_image[:, :, 0], z_clip[:, :, 0])
    # And later frames do not change earlier latents.
    other = clip.clone()
    other[:, :, 5:] = torch.randn(1, 3, 4, 32, 32)
    torch.testing.assert_close(vae.encode(other)[:, :, :2], z_clip[:, :, :2])


@pytest.mark.parametrize("model", ["vae", "gated_vae"])
def test_chunked_decode_equals_full_decode(model, request):
    """Streaming carries every causal convolution's cache, and the temporal gate's last frames."""
    vae = request.getfixturevalue(model)
    z = torch.randn(1, 4, 7, 4, 4)
    full = vae.decode(z)
    for chunk in (1, 2, 3):
        torch.testing.assert_close(vae.decode_chunked(z, chunk=chunk), full, atol=1e-5, rtol=1e-5)


def test_latent_normalisation_is_inside_encode_decode(vae):
    video = torch.randn(1, 3, 5, 16, 16)
    raw = vae.encode_distribution(video).mean
    vae.latent_mean.fill_(0.5)
    vae.latent_std.fill_(2.0)
    try:
        torch.testing.assert_close(vae.encode(video), (raw - 0.5) / 2.0)
        torch.testing.assert_close(vae.decode(vae.encode(video)), vae.decode_raw(raw), atol=1e-5, rtol=1e-5)
    finally:
        vae.latent_mean.zero_()
        vae.latent_std.fill_(1.0)


def test_bad_frame_count_is_rejected(vae):
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        vae.encode(torch.randn(1, 3, 6, 16, 16))


@pytest.mark.parametrize("stride", [(1, 1), (2, 2)])
def test_onednn_convolution_matches_pytorch_dispatch(stride):
    """CausalConv3d calls oneDNN directly on the CPU; values and gradients must be nn.Conv3d's."""
    torch.manual_seed(0)
    layer = CausalConv3d(8, 16, spatial_stride=stride[0], time_stride=stride[1])
    x = torch.randn(1, 8, 5, 8, 8, requires_grad=True)
    ours = layer(x)
    (ours**2).sum().backward()
    grads = x.grad.clone(), layer.conv.weight.grad.clone()
    x.grad, layer.conv.weight.grad = None, None
    padded = torch.cat([x[:, :, :1].expand(-1, -1, 2, -1, -1), x], dim=2)
    theirs = layer.conv(padded)
    (theirs**2).sum().backward()
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grads, (x.grad, layer.conv.weight.grad), atol=1e-4, rtol=1e-4)


def test_widening_keeps_the_reconstruction_and_narrowing_undoes_it(vae):
    """`load_narrower` adds latent channels the decoder gives zero weight; `narrowed_state` drops
    channels, decoding them as held at their mean (normalised 0)."""
    config = dataclasses.replace(vae.config, latent_channels=vae.config.latent_channels + 2)
    wide = CausalVAE(config).eval()
    wide.load_narrower(vae.state_dict())
    video = torch.randn(1, 3, 5, 32, 32)
    z_wide = wide.encode(video)
    torch.testing.assert_close(z_wide[:, :4], vae.encode(video))
    torch.testing.assert_close(wide.decode(z_wide), vae.decode(vae.encode(video)))

    with torch.no_grad():  # as if the new channels had trained: the decoder reads them
        torch.nn.init.normal_(wide.decoder[0].conv.weight[:, 4:], std=0.1)
    held = torch.cat([z_wide[:, :4], torch.zeros_like(z_wide[:, 4:])], dim=1)
    back = CausalVAE(vae.config).eval()
    back.load_state_dict(wide.narrowed_state(4))
    torch.testing.assert_close(back.encode(video), z_wide[:, :4])
    torch.testing.assert_close(back.decode(held[:, :4]), wide.decode(held))

    # A dropped channel's mean is a constant input, folded into the first conv's bias: exact
    # except where that conv pads with zeros, at the frame's edge.
    with torch.no_grad():
        wide.latent_mean[4:] = torch.tensor([0.5, -0.3])
    back.load_state_dict(wide.narrowed_state(4))
    raw = held * wide.latent_std.view(1, -1, 1, 1, 1) + wide.latent_mean.view(1, -1, 1, 1, 1)
    first_wide, first_back = wide.decoder[0](raw), back.decoder[0](raw[:, :4])
    torch.testing.assert_close(first_back[..., 1:-1, 1:-1], first_wide[..., 1:-1, 1:-1])
    assert not torch.allclose(first_back, first_wide)


@pytest.fixture(scope="module")
def gated_vae():
    torch.manual_seed(0)
    vae = CausalVAE(dataclasses.replace(MODEL_PRESETS["test"].autoencoder, gate_width=4, gate_max_levels=0.0)).eval()
    with torch.no_grad():  # a gate that has learned something: not the nearly closed init
        vae.gate.net[-1].weight.normal_(0, 0.5)
        vae.gate.net[-1].bias.fill_(0.0)
    return vae


def test_gate_closed_passes_the_decoder_frames_and_open_holds_frame_zero(gated_vae):
    video = torch.randn(1, 3, 5, 16, 16)
    last = gated_vae.gate.net[-1]
    saved = last.weight.clone(), last.bias.clone()
    try:
        with torch.no_grad():
            last.weight.zero_()
            last.bias.fill_(-100.0)
            torch.testing.assert_close(gated_vae.gate(video), video)
            last.bias.fill_(100.0)
            torch.testing.assert_close(gated_vae.gate(video), video[:, :, :1].expand_as(video))
    finally:
        with torch.no_grad():
            last.weight.copy_(saved[0])
            last.bias.copy_(saved[1])


def test_gated_decode_keeps_frame_zero_and_mixes_only_decoded_values(gated_vae):
    z = torch.randn(1, 4, 3, 4, 4)
    drawn = gated_vae.decode_raw(z)
    out = gated_vae.decode(z)
    torch.testing.assert_close(out[:, :, 0], drawn[:, :, 0])
    assert not torch.allclose(out, drawn)
    # Every output pixel lies between the decoder's values for it so far (a mix, no new colour).
    low, high = drawn.cummin(dim=2).values, drawn.cummax(dim=2).values
    assert (out >= low - 1e-5).all() and (out <= high + 1e-5).all()


def test_latent_noise_changes_only_the_training_reconstruction(gated_vae):
    video = torch.randn(2, 3, 5, 16, 16)
    plain, _ = gated_vae(video, torch.Generator().manual_seed(0))
    noisy, _ = gated_vae(video, torch.Generator().manual_seed(0), latent_noise=0.5)
    assert plain.shape == noisy.shape and not torch.allclose(plain, noisy)


def test_a_bounded_gate_moves_no_pixel_further_than_its_bound(gated_vae):
    z = torch.randn(1, 4, 5, 4, 4)
    bounded = CausalVAE(dataclasses.replace(gated_vae.config, gate_max_levels=8.0)).eval()
    bounded.load_state_dict(gated_vae.state_dict())
    with torch.no_grad():
        bounded.gate.net[-1].bias.fill_(100.0)  # holds everything it may
        drawn, out = bounded.decode_raw(z), bounded.decode(z)
    moved = (out - drawn).abs()
    assert moved.amax() <= 8.0 / 127.5 + 1e-6
    assert moved.amax() > 4.0 / 127.5  # and it does hold, up to the bound
