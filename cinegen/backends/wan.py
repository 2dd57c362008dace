"""Wan 2.1 / 2.2 text-to-video (diffusers `WanPipeline` format) as a cinegen backend.

Wan is a flow-matching model with cinegen's own convention (`x_t = (1−t)·x0 + t·ε`, it
predicts `ε − x0`, timestep input `1000·t`). Wan 2.2 TI2V (`expand_timesteps`) was trained
with a timestep per token, so the canvas goes in as it is; Wan 2.1 and 2.2 A14B take one t
per sample and get the canvas by RePaint replacement. Wan 2.2 A14B's second transformer
takes over below `boundary_ratio`. Latents are normalised with the VAE's per-channel
`latents_mean` / `latents_std`; 4k+1 frames, sides a multiple of 8·2 (16·2 for Wan 2.2 5B).

Image-to-video checkpoints (`WanImageToVideoPipeline`: Wan 2.1 I2V / FLF2V, Wan 2.2 I2V A14B)
take the given frames as extra input channels: per latent frame, `time_factor` mask channels
(which of the video frames it covers are given) and a condition latent, the VAE encoding of the
video with the given frames in place and zero (mid-grey) frames elsewhere; Wan 2.1's also
attend to CLIP image tokens of the given image (of the first and last for FLF2V). The noisy
latent itself is generated everywhere, the given frames included (cinegen then keeps the given
latent frames exactly, as for every canvas).
"""

from __future__ import annotations

import numpy as np
import torch

from cinegen.backends.diffusers_common import (
    ChannelCondition,
    DiffusersBackend,
    TextContext,
    flow_sigmas,
)
from cinegen.errors import UserError


class WanBackend(DiffusersBackend):
    family = "wan"
    max_sequence_length = 512

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
        pipeline_config = pipeline_config or {}
        self.transformer_2 = components.get("transformer_2")
        self.boundary_ratio = pipeline_config.get("boundary_ratio")
        self.per_token_t = bool(pipeline_config.get("expand_timesteps", False))
        super().__init__(components, name, device, dtype, options, defaults, cast)
        vae_config, tf_config = self.vae.config, self.transformer.config
        self.latent_channels = vae_config.z_dim
        self.spatial_factor = vae_config.scale_factor_spatial
        self.time_factor = vae_config.scale_factor_temporal
        self.patch = tf_config.patch_size[1]
        self.latents_mean = torch.tensor(vae_config.latents_mean).view(1, -1, 1, 1, 1)
        self.latents_std = torch.tensor(vae_config.latents_std).view(1, -1, 1, 1, 1)
        self.condition_channels = tf_config.in_channels != tf_config.out_channels
        if self.condition_channels:
            expected = tf_config.out_channels + self.time_factor + self.latent_channels
            if tf_config.in_channels != expected:
                raise UserError(
                    f"{name!r}: a Wan transformer with {tf_config.in_channels} input channels is not an "
                    f"image-to-video layout cinegen knows (expected {expected}: latent, mask, condition)"
                )
            if tf_config.image_dim is not None and None in (self.image_encoder, self.image_processor):
                raise UserError(f"{name!r}: this Wan image-to-video model needs its image_encoder folder")
        self._blank: dict[tuple, torch.Tensor] = {}
        if self.transformer_2 is not None:
            self.transformer_2.requires_grad_(False).eval()
            if not self.options.offload:
                self.transformer_2.to(self.device)

    def _vae_dtype(self) -> torch.dtype:
        return torch.float32  # Wan's VAE is run in fp32 (its model card and pipeline examples do)

    def _modules(self) -> list[torch.nn.Module]:
        return super()._modules() + ([self.transformer_2] if getattr(self, "transformer_2", None) else [])

    def _encode_prompts(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        from diffusers.pipelines.wan.pipeline_wan import prompt_clean

        tokens = self._tokenize([prompt_clean(p) for p in prompts])
        ids, mask = (
            tokens.input_ids.to(self.text_encoder.device),
            tokens.attention_mask.to(self.text_encoder.device),
        )
        # umT5 runs with the attention mask, so padding never reaches a real token: encode only up
        # to the longest prompt and zero-pad to max_sequence_length as WanPipeline does after
        # encoding all 512 positions (same result, a fraction of the work).
        used = max(1, int(mask.sum(dim=1).max()))
        embeds = self.text_encoder(ids[:, :used], mask[:, :used]).last_hidden_state.float()
        embeds = torch.nn.functional.pad(embeds * mask[:, :used, None], (0, 0, 0, ids.shape[1] - used))
        return embeds, mask

    def _schedule(self, steps: int, tokens: int) -> torch.Tensor:
        return flow_sigmas(self.scheduler_config, steps)

    # -- image-to-video: the given frames as input channels -----------------------------------------------

    def prepare_condition(self, canvas, known: torch.Tensor | None, batch: int) -> ChannelCondition:
        """Mask channels and the condition latent for `canvas` (known: (B, C, T, H, W) or None), plus
        the CLIP image tokens. Given pixel frames (`canvas.images`, the pipeline's --image) are encoded
        among zero frames exactly as WanImageToVideoPipeline does; known latent cells are used as they
        are, and cells nothing is known of get the encoding of zero frames."""
        t, h, w = canvas.shape
        cells = canvas.cell_mask().to(self.device)  # (1, T, H, W), 1 = given
        latent = self._condition_latent(canvas).expand(batch, -1, -1, -1, -1)
        if known is not None:
            latent = torch.where(cells.bool(), known.to(latent), latent)
        # One mask channel per video frame a latent frame covers: all of a given latent frame's.
        mask = cells[:, None].expand(batch, self.time_factor, t, h, w)
        embeds = None
        if self.transformer.config.image_dim is not None:
            embeds = self._image_embeds(self._condition_images(canvas, known)).repeat(batch, 1, 1)
        return ChannelCondition(torch.cat([mask.to(latent), latent], dim=1), embeds)

    def _condition_latent(self, canvas) -> torch.Tensor:
        t, h, w = canvas.shape
        frames, s = 1 + (t - 1) * self.time_factor, self.spatial_factor
        key = (frames, h, w)
        if not canvas.images and key in self._blank:
            return self._blank[key]
        video = torch.zeros(1, 3, frames, h * s, w * s)
        for index, image in (canvas.images or {}).items():
            video[0, :, index] = image
        latent = self.encode_video(video)
        if not canvas.images:
            self._blank = {key: latent}  # the blank condition of the last size used
        return latent

    def _condition_images(self, canvas, known: torch.Tensor | None) -> list[torch.Tensor]:
        """The images for CLIP (first, and last for FLF2V): the given pixel frames; else the first / last
        known latent frame, decoded; else a zero (mid-grey) image."""
        count = 2 if self.transformer.config.pos_embed_seq_len else 1
        t, h, w = canvas.shape
        blank = torch.zeros(3, h * self.spatial_factor, w * self.spatial_factor)
        if canvas.images:
            order = sorted(canvas.images)
            picks = [canvas.images[order[0]], canvas.images[order[-1]] if len(order) > 1 else blank]
        elif known is not None and canvas.mask is not None:
            given = [int(i) for i in torch.nonzero(canvas.mask.flatten(1).amax(dim=1)).flatten()]
            picks = [self.decode_latent(known[:1, :, i : i + 1])[0, :, -1] for i in (given[0], given[-1])]
        else:
            picks = [blank, blank]
        return picks[:count]

    @torch.no_grad()
    def _image_embeds(self, images: list[torch.Tensor]) -> torch.Tensor:
        """CLIP's penultimate hidden states (what WanImageToVideoPipeline gives the transformer)."""
        from PIL import Image

        with self.timings.part("image_encoder"):
            pixels = [((im.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8) for im in images]
            pil = [Image.fromarray(np.ascontiguousarray(p.permute(1, 2, 0).cpu().numpy())) for p in pixels]
            encoder = self._on_device(self.image_encoder)
            inputs = self.image_processor(images=pil, return_tensors="pt")
            values = inputs["pixel_values"].to(self.device, encoder.dtype)
            return encoder(pixel_values=values, output_hidden_states=True).hidden_states[-2].to(self.dtype)

    def _denoise(
        self,
        latent: torch.Tensor,
        t_tokens: torch.Tensor,
        context: TextContext,
        condition: ChannelCondition | None = None,
    ) -> torch.Tensor:
        t_max = float(t_tokens.max())
        model = self.transformer
        if (
            self.transformer_2 is not None
            and self.boundary_ratio is not None
            and t_max * 1000 < self.boundary_ratio * 1000
        ):
            model = self._on_device(self.transformer_2)
        timestep = t_tokens.flatten(1) if self.per_token_t else t_tokens.flatten(1)[:, 0]
        image = None
        if condition is not None:
            latent = torch.cat([latent, condition.channels.to(latent)], dim=1)
            image = condition.image_embeds
        return model(
            hidden_states=latent.to(self.dtype),
            timestep=timestep * 1000.0,
            encoder_hidden_states=context.embeds.to(self.dtype),
            encoder_hidden_states_image=None if image is None else image.to(self.dtype),
            return_dict=False,
        )[0]

    def _encode(self, video: torch.Tensor) -> torch.Tensor:
        z = self.vae.encode(video).latent_dist.mode()
        return (z - self.latents_mean.to(z)) / self.latents_std.to(z)

    def _decode(self, latent: torch.Tensor) -> torch.Tensor:
        z = latent * self.latents_std.to(latent) + self.latents_mean.to(latent)
        return self.vae.decode(z, return_dict=False)[0]
