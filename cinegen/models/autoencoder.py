"""Causal 3D VAE: video `[B, 3, 1+4k, H, W]` <-> latent `[B, C, 1+k, H/8, W/8]`.

Every temporal convolution pads on the past side only, and the first frame is padded by
repeating itself, so latent frame 0 depends on video frame 0 alone: an image is a
one-frame clip, and a first-frame condition encodes exactly as it would inside a clip
(the causal design of MAGVIT-v2 / CogVideoX / LTX-Video). Norms are per frame for the
same reason. `decode_chunked` streams latent frames through the decoder, carrying each
causal convolution's last input frames as a cache, so memory does not grow with length
and the result equals a full decode. An optional `TemporalGate` after the decoder keeps
still pixels still.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from cinegen.config import AutoencoderConfig

_ONEDNN = torch.backends.mkldnn.is_available()


class CausalConv3d(nn.Module):
    """3D convolution that sees only the current and past frames.

    In streaming mode (`stream_cache` not None) the left padding comes from the previous
    chunk's trailing frames instead of replicating frame 0.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, spatial_stride: int = 1, time_stride: int = 1):
        super().__init__()
        self.time_pad = kernel - 1
        self.time_stride = time_stride
        self.conv = nn.Conv3d(c_in, c_out, kernel, stride=(time_stride, spatial_stride, spatial_stride),
                              padding=(0, kernel // 2, kernel // 2))
        self.stream_cache: torch.Tensor | None = None
        self.streaming = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W)
        if self.time_pad == 0:
            return self.conv(x)
        if self.streaming and self.stream_cache is not None:
            past = self.stream_cache
        else:
            past = x[:, :, :1].expand(-1, -1, self.time_pad, -1, -1)
        padded = torch.cat([past, x], dim=2)
        if self.streaming:
            assert self.time_stride == 1, "streaming decode uses stride-1 convolutions only"
            self.stream_cache = padded[:, :, -self.time_pad :].detach()
        return self._convolve(padded)

    def _convolve(self, x: torch.Tensor) -> torch.Tensor:
        # PyTorch sends a batch-1 float32 CPU input with N·C·T·H <= 20480 to its im2col path
        # (`_select_conv_backend` says Slow3d; the threshold is tuned for 2D), which is 2-3.5x
        # slower than oneDNN on this VAE's decoder layers at 64-96 px; larger inputs go to oneDNN
        # anyway. Same numbers to 1e-5, and autograd works through it. Autocast keeps its own path.
        c = self.conv
        if (_ONEDNN and x.device.type == "cpu" and x.dtype == c.weight.dtype == torch.float32
                and not torch.is_autocast_enabled("cpu")):
            return torch.mkldnn_convolution(x, c.weight, c.bias, c.padding, c.stride, c.dilation, c.groups)
        return c(x)


class FrameNorm(nn.GroupNorm):
    """GroupNorm over each frame separately (statistics never cross time, keeping causality)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        y = super().forward(rearrange(x, "b c t h w -> (b t) c h w"))
        return rearrange(y, "(b t) c h w -> b c t h w", b=b)


def _norm(channels: int) -> FrameNorm:
    return FrameNorm(min(8, channels), channels, eps=1e-6)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), CausalConv3d(c_in, c_out)
        self.norm2, self.conv2 = _norm(c_out), CausalConv3d(c_out, c_out)
        self.skip = nn.Conv3d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


def space_time_to_channels(x: torch.Tensor, space: bool, time: bool) -> torch.Tensor:
    """Fold 2x2 pixels and/or 2 frames into channels; frame 0 is paired with itself (causal)."""
    if time:
        x = torch.cat([x[:, :, :1], x], dim=2)  # 1 + 2m -> 2 + 2m frames: (x0, x0), (x1, x2), ...
        x = rearrange(x, "b c (t two) h w -> b (c two) t h w", two=2)
    if space:
        x = rearrange(x, "b c t (h p1) (w p2) -> b (c p1 p2) t h w", p1=2, p2=2)
    return x


def channels_to_space_time(x: torch.Tensor, space: bool, time: bool, drop_first: bool) -> torch.Tensor:
    """Inverse of `space_time_to_channels`; drops the duplicate of frame 0 (first chunk only)."""
    if space:
        x = rearrange(x, "b (c p1 p2) t h w -> b c t (h p1) (w p2)", p1=2, p2=2)
    if time:
        x = rearrange(x, "b (c two) t h w -> b c (t two) h w", two=2)
        if drop_first:
            x = x[:, :, 1:]
    return x


def _group_mean(x: torch.Tensor, c_out: int) -> torch.Tensor:
    return x.unflatten(1, (c_out, -1)).mean(2)


class Downsample(nn.Module):
    """Halve H and W and/or T: 1 + 2m frames -> 1 + m, frame 0 stays alone.

    A parameter-free shortcut (fold space/time into channels, average channel groups) is
    added to the strided convolution, as in DC-AE (arXiv 2410.10733): the block starts near
    a lossless rearrangement, which makes high-compression autoencoders train much faster.
    """

    def __init__(self, c_in: int, c_out: int, space: bool, time: bool):
        super().__init__()
        self.space, self.time, self.c_out = space, time, c_out
        folded = c_in * (4 if space else 1) * (2 if time else 1)
        assert folded % c_out == 0, f"shortcut needs {folded} channels divisible by {c_out}"
        self.conv = CausalConv3d(c_in, c_out, spatial_stride=2 if space else 1, time_stride=2 if time else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + _group_mean(space_time_to_channels(x, self.space, self.time), self.c_out)


class Upsample(nn.Module):
    """Double H and W and/or T: 1 + m frames -> 1 + 2m (the copy before frame 0 is dropped)."""

    def __init__(self, c_in: int, c_out: int, space: bool, time: bool):
        super().__init__()
        self.space, self.time = space, time
        self.repeats = c_out * (4 if space else 1) * (2 if time else 1) // c_in
        assert self.repeats * c_in == c_out * (4 if space else 1) * (2 if time else 1)
        self.conv = CausalConv3d(c_in, c_out)
        self.drop_first = True  # cleared while streaming chunks after the first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = channels_to_space_time(x.repeat_interleave(self.repeats, dim=1), self.space, self.time,
                                          self.drop_first)
        s = 2 if self.space else 1
        x = F.interpolate(x, scale_factor=(2 if self.time else 1, s, s), mode="nearest")
        if self.time and self.drop_first:
            x = x[:, :, 1:]
        return self.conv(x) + shortcut


class TemporalGate(nn.Module):
    """Per pixel, a learned choice between the decoder's frame and the previous output frame.

    A decoder that draws each frame anew redraws a still background around a moving object a
    little differently every time: flicker, which per-frame losses hardly see. Frame by frame,
    the gate looks at the decoder's frame, its change from the decoder's previous frame and its
    difference from the previous output, and mixes `g · previous output + (1 - g) · frame`. A
    still pixel can so stay exactly as it was, and every output is a mix of what the decoder
    drew, never a new colour. With `max_levels`, the mix moves a pixel at most that far from the
    decoder's frame: a gate that holds where it should not (an object's old edge) leaves a faint
    tint, not a ghost. Frame 0 passes unchanged (an image, a given first frame). It starts nearly
    closed (g ≈ 0.02), so a model it is added to decodes almost as before.
    """

    def __init__(self, width: int, max_levels: float = 0.0):
        super().__init__()
        self.max_step = max_levels / 127.5  # in the decoder's [-1, 1] units; 0: unbounded
        # Receptive field 11 px: a dilated middle layer sees whether an object edge is near.
        self.net = nn.Sequential(
            nn.Conv2d(9, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=2, dilation=2), nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, 1, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.constant_(self.net[-1].bias, -4.0)

    def forward(self, video: torch.Tensor, before: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> torch.Tensor:
        """`video` (B, 3, T, H, W) as decoded; `before` = (decoded, output) last frames of the chunk
        before, when decoding in chunks."""
        frames = video.unbind(2)
        if before is None:
            drawn, shown = frames[0], frames[0]
            out = [frames[0]]
            frames = frames[1:]
        else:
            (drawn, shown), out = before, []
        for frame in frames:
            gate = torch.sigmoid(self.net(torch.cat([frame, frame - drawn, shown - frame], dim=1)))
            step = gate * (shown - frame)
            shown = frame + (step.clamp(-self.max_step, self.max_step) if self.max_step else step)
            drawn = frame
            out.append(shown)
        return torch.stack(out, dim=2)


@dataclass
class LatentDistribution:
    mean: torch.Tensor
    logvar: torch.Tensor

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype).to(self.mean.device)
        return self.mean + torch.exp(0.5 * self.logvar) * noise

    def kl(self) -> torch.Tensor:
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar).mean()


class CausalVAE(nn.Module):
    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.config = config
        ch = config.channels
        assert len(config.time_downsample) == len(config.spatial_downsample) == len(ch) - 1
        space, time = config.spatial_downsample, config.time_downsample

        folded = config.image_channels * config.patch**2
        enc: list[nn.Module] = [CausalConv3d(folded, ch[0])]
        for level, c in enumerate(ch):
            enc += [ResBlock(c, c) for _ in range(config.blocks_per_level)]
            if level < len(ch) - 1:
                enc.append(Downsample(c, ch[level + 1], space[level], time[level]))
        enc += [ResBlock(ch[-1], ch[-1]), _norm(ch[-1]), nn.SiLU(), CausalConv3d(ch[-1], 2 * config.latent_channels)]
        self.encoder = nn.Sequential(*enc)

        dec: list[nn.Module] = [CausalConv3d(config.latent_channels, ch[-1]), ResBlock(ch[-1], ch[-1])]
        for level in reversed(range(len(ch))):
            dec += [ResBlock(ch[level], ch[level]) for _ in range(config.blocks_per_level)]
            if level > 0:
                dec.append(Upsample(ch[level], ch[level - 1], space[level - 1], time[level - 1]))
        dec += [_norm(ch[0]), nn.SiLU(), CausalConv3d(ch[0], folded)]
        self.decoder = nn.Sequential(*dec)
        self.gate = TemporalGate(config.gate_width, config.gate_max_levels) if config.gate_width else None

        # Start with a narrow posterior (std ≈ 0.02): with a tiny KL weight, unit-variance
        # sampling noise at init would swamp the signal and stall early training.
        out = self.encoder[-1].conv
        with torch.no_grad():
            out.bias[config.latent_channels :].fill_(-8.0)

        # Latent normalisation measured after training (per channel), so the denoiser sees
        # roughly unit-variance latents; applied inside encode/decode, never by callers.
        self.register_buffer("latent_mean", torch.zeros(config.latent_channels))
        self.register_buffer("latent_std", torch.ones(config.latent_channels))

    def _latent_layers(self) -> tuple[str, str]:
        """The state-dict prefixes of the two convs whose shapes follow the latent channels: the
        encoder's last (means, then log-variances) and the decoder's first."""
        return f"encoder.{len(self.encoder) - 1}.conv", "decoder.0.conv"

    @torch.no_grad()
    def load_narrower(self, state: dict[str, torch.Tensor]) -> None:
        """Start as a VAE with fewer latent channels (function-preserving widening, Net2Net, arXiv
        1511.05641): its channels come first; the decoder gives the new ones zero weight, so the
        reconstruction is that VAE's, and the encoder keeps its fresh features for them, so they
        have something to learn from."""
        own = self.state_dict()
        old_c, new_c = state["latent_mean"].numel(), self.config.latent_channels
        enc_out, dec_in = self._latent_layers()
        for name in ("latent_mean", "latent_std"):
            own[name][:old_c] = state[name]
        for name in (f"{enc_out}.weight", f"{enc_out}.bias"):  # rows: the means, then the log-variances
            mean, logvar = state[name].chunk(2)
            own[name][:old_c], own[name][new_c : new_c + old_c] = mean, logvar
        own[f"{dec_in}.weight"].zero_()[:, :old_c] = state[f"{dec_in}.weight"]
        widened = {"latent_mean", "latent_std", f"{enc_out}.weight", f"{enc_out}.bias", f"{dec_in}.weight"}
        self.load_state_dict({name: own[name] if name in widened else state[name] for name in own})

    @torch.no_grad()
    def narrowed_state(self, channels: int) -> dict[str, torch.Tensor]:
        """The weights of a VAE with only the first `channels` latent channels: the encoder's
        means and log-variances for them, and a decoder that reads the others as held at their
        mean (normalised 0). Their constant input is folded into the first conv's bias: exact but
        at the frame's edges, where that conv pads with zeros (the decoder's per-frame norms then
        spread that small change; for stop 23's 16-channel VAE, whose means are within 0.05 of 0,
        PSNR moves by less than 0.001 dB)."""
        enc_out, dec_in = self._latent_layers()
        c = self.config.latent_channels
        state = {name: value.clone() for name, value in self.state_dict().items()}
        for name in (f"{enc_out}.weight", f"{enc_out}.bias"):  # rows: the means, then the log-variances
            state[name] = torch.cat([state[name][:channels], state[name][c : c + channels]])
        weight, dropped_mean = state[f"{dec_in}.weight"], state["latent_mean"][channels:]
        state[f"{dec_in}.bias"] += torch.einsum("oikhw,i->o", weight[:, channels:], dropped_mean)
        state[f"{dec_in}.weight"] = weight[:, :channels]
        for name in ("latent_mean", "latent_std"):
            state[name] = state[name][:channels]
        return state

    # -- geometry -----------------------------------------------------------------------

    def latent_frames(self, frames: int) -> int:
        f = self.config.time_factor
        if frames < 1 or (frames - 1) % f:
            raise ValueError(f"video frames must be 1 + {f}k, got {frames}")
        return 1 + (frames - 1) // f

    def video_frames(self, latent_frames: int) -> int:
        return 1 + (latent_frames - 1) * self.config.time_factor

    # -- encode / decode ----------------------------------------------------------------

    def _stats(self, shape_like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        view = (1, -1, 1, 1, 1)
        return self.latent_mean.view(view).to(shape_like), self.latent_std.view(view).to(shape_like)

    def encode_distribution(self, video: torch.Tensor) -> LatentDistribution:
        """Raw (un-normalised) posterior; used by training."""
        self.latent_frames(video.shape[2])
        s = self.config.spatial_factor
        assert video.shape[-1] % s == 0 and video.shape[-2] % s == 0, f"H, W must be multiples of {s}"
        p = self.config.patch
        folded = rearrange(video, "b c t (h p1) (w p2) -> b (c p1 p2) t h w", p1=p, p2=p)
        mean, logvar = self.encoder(folded).chunk(2, dim=1)
        return LatentDistribution(mean, logvar.clamp(-20.0, 10.0))

    def encode(self, video: torch.Tensor, generator: torch.Generator | None = None, sample: bool = False) -> torch.Tensor:
        """Video in [-1, 1] `(B, 3, T, H, W)` -> normalised latent `(B, C, T', H/8, W/8)`."""
        dist = self.encode_distribution(video)
        z = dist.sample(generator) if sample else dist.mean
        mean, std = self._stats(z)
        return (z - mean) / std

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(latent)
        return self.gated(self.decode_raw(latent * std + mean))

    def gated(self, video: torch.Tensor) -> torch.Tensor:
        return self.gate(video) if self.gate is not None else video

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        p = self.config.patch
        return rearrange(self.decoder(z), "b (c p1 p2) t h w -> b c t (h p1) (w p2)", p1=p, p2=p)

    def forward(self, video: torch.Tensor, generator: torch.Generator | None = None, latent_noise: float = 0.0,
                redraw: Callable[[torch.Tensor], torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, LatentDistribution]:
        """Training pass: reconstruction from a posterior sample, and the posterior. With
        `latent_noise`, the sample gets extra noise of a std drawn per clip from [0, latent_noise]
        times each channel's latent std (TrainConfig.latent_noise). With `redraw`, the posterior
        mean, normalised as `encode` returns it, is redrawn by it (a denoiser: TrainConfig.
        denoised_share) and decoded instead."""
        dist = self.encode_distribution(video)
        if redraw is not None:
            mean, std = self._stats(dist.mean)
            with torch.no_grad():
                latent = redraw((dist.mean - mean) / std)
            return self.decode(latent), dist
        z = dist.sample(generator)
        if latent_noise > 0:
            b = z.shape[0]
            scale = latent_noise * torch.rand(b, generator=generator).view(b, 1, 1, 1, 1).to(z)
            noise = torch.randn(z.shape, generator=generator).to(z)
            z = z + scale * self._stats(z)[1] * noise
        return self.gated(self.decode_raw(z)), dist

    @torch.no_grad()
    def decode_chunked(self, latent: torch.Tensor, chunk: int = 4) -> torch.Tensor:
        """Decode `chunk` latent frames at a time; equal to `decode` but with bounded memory.

        Returns a float video on the CPU so long clips never sit whole on an accelerator.
        """
        if latent.shape[2] <= chunk:
            return self.decode(latent).cpu()
        mean, std = self._stats(latent)
        convs = [m for m in self.decoder.modules() if isinstance(m, CausalConv3d)]
        ups = [m for m in self.decoder.modules() if isinstance(m, Upsample)]
        pieces, before = [], None
        try:
            for m in convs:
                m.streaming, m.stream_cache = True, None
            for i, start in enumerate(range(0, latent.shape[2], chunk)):
                for u in ups:
                    u.drop_first = i == 0
                drawn = self.decode_raw(latent[:, :, start : start + chunk] * std + mean)
                shown = self.gate(drawn, before) if self.gate is not None else drawn
                before = (drawn[:, :, -1], shown[:, :, -1])  # the gate's state for the next chunk
                pieces.append(shown.cpu())
        finally:
            for m in convs:
                m.streaming, m.stream_cache = False, None
            for u in ups:
                u.drop_first = True
        return torch.cat(pieces, dim=2)
