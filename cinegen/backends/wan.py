"""Wan 2.1 / 2.2 text-to-video (diffusers `WanPipeline` format) as a cinegen backend.

Wan is a flow-matching model with cinegen's own convention (`x_t = (1−t)·x0 + t·ε`, it
predicts `ε − x0`, timestep input `1000·t`). Wan 2.2 TI2V (`expand_timesteps`) was trained
with a timestep per token, so the canvas goes in as it is; Wan 2.1 and 2.2 A14B take one t
per sample and get the canvas by RePaint replacement. Wan 2.2 A14B's second transformer
takes over below `boundary_ratio`. Latents are normalised with the VAE's per-channel
`latents_mean` / `latents_std`; 4k+1 frames, sides a multiple of 8·2 (16·2 for Wan 2.2 5B).
"""

from __future__ import annotations

import torch

from cinegen.backends.diffusers_common import DiffusersBackend, TextContext, flow_sigmas


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

    def schedule(self, steps: int, tokens: int) -> torch.Tensor:
        return flow_sigmas(self.scheduler_config, steps)

    def _denoise(self, latent: torch.Tensor, t_tokens: torch.Tensor, context: TextContext) -> torch.Tensor:
        t_max = float(t_tokens.max())
        model = self.transformer
        if (
            self.transformer_2 is not None
            and self.boundary_ratio is not None
            and t_max * 1000 < self.boundary_ratio * 1000
        ):
            model = self._on_device(self.transformer_2)
        timestep = t_tokens.flatten(1) if self.per_token_t else t_tokens.flatten(1)[:, 0]
        return model(
            hidden_states=latent.to(self.dtype),
            timestep=timestep * 1000.0,
            encoder_hidden_states=context.embeds.to(self.dtype),
            return_dict=False,
        )[0]

    def _encode(self, video: torch.Tensor) -> torch.Tensor:
        z = self.vae.encode(video).latent_dist.mode()
        return (z - self.latents_mean.to(z)) / self.latents_std.to(z)

    def _decode(self, latent: torch.Tensor) -> torch.Tensor:
        z = latent * self.latents_std.to(latent) + self.latents_mean.to(latent)
        return self.vae.decode(z, return_dict=False)[0]
