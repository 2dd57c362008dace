"""LTX-Video (diffusers `LTXPipeline` / `LTXImageToVideoPipeline` format) as a cinegen backend.

LTX-Video is a flow-matching model with cinegen's convention and a timestep per token (its
image-to-video pipeline gives the first frame t = 0), so the canvas maps onto it directly.
Its transformer has patch 1 (the VAE already compresses 32x32x8), so a token is a latent
cell: 8k+1 frames, sides a multiple of 32. The schedule is the scheduler's own with the
resolution-dependent shift `mu` (LTXPipeline: sigmas linspace(1, 1/N, N), mu from the
token count). Latents are normalised by the VAE's `latents_mean` / `latents_std`.
"""

from __future__ import annotations

import torch
from einops import rearrange

from cinegen.backends.diffusers_common import DiffusersBackend, TextContext, flow_sigmas


def calculate_shift(tokens: int, config: dict) -> float:
    """The dynamic-shift `mu` for a sequence length (linear between two reference lengths, as in Flux/LTX)."""
    base_len, max_len = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
    base_shift, max_shift = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
    m = (max_shift - base_shift) / (max_len - base_len)
    return tokens * m + base_shift - m * base_len


class LTXBackend(DiffusersBackend):
    family = "ltx"
    per_token_t = True
    max_sequence_length = 128

    def __init__(
        self,
        components: dict,
        name: str,
        device,
        dtype,
        options=None,
        defaults=None,
        pipeline_config: dict | None = None,
        cast: bool = True,
    ):
        super().__init__(components, name, device, dtype, options, defaults, cast)
        vae_config, tf_config = self.vae.config, self.transformer.config
        self.latent_channels = tf_config.in_channels
        self.spatial_factor = self.vae.spatial_compression_ratio
        self.time_factor = self.vae.temporal_compression_ratio
        self.patch = tf_config.patch_size
        if tf_config.patch_size != 1 or tf_config.patch_size_t != 1:
            from cinegen.errors import UserError

            raise UserError(
                f"LTX-Video transformer patch {tf_config.patch_size_t}x{tf_config.patch_size} "
                "is not supported; cinegen supports patch 1 (all released LTX-Video models)"
            )
        self.scaling_factor = vae_config.scaling_factor
        self.decode_timestep = 0.0  # LTXPipeline's default; used by VAEs with timestep conditioning

    def _encode_prompts(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self._tokenize(prompts)
        # LTXPipeline runs T5 without the attention mask and gives the mask to the transformer.
        embeds = self.text_encoder(tokens.input_ids.to(self.text_encoder.device))[0].float()
        return embeds, tokens.attention_mask.bool()

    def _schedule(self, steps: int, tokens: int) -> torch.Tensor:
        return flow_sigmas(
            self.scheduler_config, steps, mu=calculate_shift(tokens, self.scheduler_config), linear=True
        )

    def _denoise(self, latent: torch.Tensor, t_tokens: torch.Tensor, context: TextContext) -> torch.Tensor:
        b, _, f, h, w = latent.shape
        tokens = rearrange(latent, "b c f h w -> b (f h w) c")  # patch 1: a token per latent cell
        t = t_tokens.flatten(1)  # (B, L)
        timestep = t[:, 0] if bool((t == t[:, :1]).all()) else t
        fps = float(context.fps[0])
        rope_scale = (self.time_factor / fps, self.spatial_factor, self.spatial_factor)
        v = self.transformer(
            hidden_states=tokens.to(self.dtype),
            encoder_hidden_states=context.embeds.to(self.dtype),
            timestep=timestep * 1000.0,
            encoder_attention_mask=context.mask,
            num_frames=f,
            height=h,
            width=w,
            rope_interpolation_scale=rope_scale,
            return_dict=False,
        )[0]
        return rearrange(v, "b (f h w) c -> b c f h w", f=f, h=h, w=w)

    def _stats(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.vae.latents_mean.view(1, -1, 1, 1, 1).to(z), self.vae.latents_std.view(1, -1, 1, 1, 1).to(
            z
        )

    def _encode(self, video: torch.Tensor) -> torch.Tensor:
        z = self.vae.encode(video).latent_dist.mode()
        mean, std = self._stats(z)
        return (z - mean) * self.scaling_factor / std

    def _decode(self, latent: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(latent)
        z = latent * std / self.scaling_factor + mean
        temb = None
        if self.vae.config.timestep_conditioning:
            temb = torch.full((z.shape[0],), self.decode_timestep, device=z.device, dtype=z.dtype)
        return self.vae.decode(z, temb, return_dict=False)[0]
