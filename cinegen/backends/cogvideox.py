"""CogVideoX (diffusers `CogVideoXPipeline` format) as a cinegen backend.

CogVideoX is a v-prediction diffusion model (`x = a·x0 + s·ε`, a² + s² = ᾱ + (1 − ᾱ) = 1,
the model predicts `a·ε − s·x0` at an integer timestep). Dividing by (a + s) maps it onto
cinegen's flow: `y = x / (a + s) = (1 − t)·x0 + t·ε` with `t = s / (a + s)`. Then

    x0 = a·x − s·v_pred,   ε = s·x + a·v_pred,   flow velocity = ε − x0,

and an Euler step of the flow from t to t' is exactly a deterministic DDIM step (η = 0) from
ᾱ(t) to ᾱ(t'), so the one sampler reproduces CogVideoXDDIMScheduler step for step. The DPM
scheduler (CogVideoX-5B's default) is multistep and has no such identity: cinegen runs such a
model with the DDIM-equivalent Euler schedule on the same ᾱ table.

The transformer takes one t per sample: the canvas goes in by RePaint replacement.
Latents are scaled by the VAE's `scaling_factor`; 4k+1 frames, sides a multiple of 8·2.

Image-to-video checkpoints (`CogVideoXImageToVideoPipeline`, in_channels = 2 × latent) take the
given latent frames on extra channels, zeros where nothing is given (the image latent padded
with zeros along time), and generate the noisy latent everywhere; those with an `ofs`
embedding (CogVideoX 1.5 I2V) get ofs = 2, as their pipeline gives.
"""

from __future__ import annotations

import torch

from cinegen.backends.diffusers_common import ChannelCondition, DiffusersBackend, TextContext
from cinegen.errors import UserError


class CogVideoXBackend(DiffusersBackend):
    family = "cogvideox"
    per_token_t = False

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
        tf_config = self.transformer.config
        if tf_config.patch_size_t is not None:
            raise UserError(
                f"{name!r}: CogVideoX 1.5 (temporal patch {tf_config.patch_size_t}) is not supported yet; "
                "supported: CogVideoX 1.0 (2B, 5B)"
            )
        self.condition_channels = tf_config.in_channels != tf_config.out_channels
        if self.condition_channels and tf_config.in_channels != 2 * tf_config.out_channels:
            raise UserError(
                f"{name!r}: a CogVideoX transformer with {tf_config.in_channels} input channels for "
                f"{tf_config.out_channels} latent channels is not a layout cinegen knows (image-to-video: 2x)"
            )
        self.latent_channels = tf_config.out_channels
        self.spatial_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.time_factor = self.vae.config.temporal_compression_ratio
        self.patch = tf_config.patch_size
        self.max_sequence_length = tf_config.max_text_seq_length
        self.scaling_factor = self.vae.config.scaling_factor
        self._scheduler = components["scheduler"]
        self.alphas_cumprod = self._scheduler.alphas_cumprod.double().cpu()  # ᾱ per integer timestep
        self.final_alpha = float(self._scheduler.final_alpha_cumprod)
        self._rotary: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self._index_of_t: dict[float, int] = {}  # a run asks for the same few t at every step
        # Read once: a small model's step is short enough for config lookups to show.
        self._uses_rotary = bool(tf_config.use_rotary_positional_embeddings)
        self._uses_ofs = bool(tf_config.ofs_embed_dim)

    # ᾱ ↔ flow t
    @staticmethod
    def flow_t(alpha_bar: float) -> float:
        a, s = alpha_bar**0.5, (1.0 - alpha_bar) ** 0.5
        return s / (a + s)

    def _timestep_index(self, t: float) -> int:
        """The integer timestep whose ᾱ gives this flow t (exact for schedule points)."""
        if t not in self._index_of_t:
            r = t / max(1.0 - t, 1e-12)
            alpha_bar = 1.0 / (1.0 + r * r)
            self._index_of_t[t] = int(torch.argmin((self.alphas_cumprod - alpha_bar).abs()))
        return self._index_of_t[t]

    def _schedule(self, steps: int, tokens: int) -> torch.Tensor:
        """The DDIM scheduler's timesteps as flow t, ending at its final ᾱ (t = 0 with set_alpha_to_one).
        Exact when 1000 / steps is an integer; otherwise DDIM's `prev_timestep` rule skips differently."""
        from diffusers import CogVideoXDDIMScheduler

        ddim = CogVideoXDDIMScheduler.from_config(self._scheduler.config)
        ddim.set_timesteps(steps, device="cpu")
        t = [self.flow_t(float(self.alphas_cumprod[int(ts)])) for ts in ddim.timesteps]
        return torch.tensor([*t, self.flow_t(self.final_alpha)], dtype=torch.float64).float()

    def _encode_prompts(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self._tokenize(prompts)
        embeds = self.text_encoder(tokens.input_ids.to(self.text_encoder.device))[0].float()
        return embeds, tokens.attention_mask.bool()

    def _rotary_embedding(self, frames: int, height: int, width: int):
        """CogVideoX 1.0 3D RoPE for a latent grid (as CogVideoXPipeline prepares it)."""
        from diffusers.models.embeddings import get_3d_rotary_pos_embed
        from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

        key = (frames, height, width)
        if key not in self._rotary:
            cfg, p = self.transformer.config, self.transformer.config.patch_size
            grid = (height // p, width // p)
            crops = get_resize_crop_region_for_grid(grid, cfg.sample_width // p, cfg.sample_height // p)
            self._rotary[key] = get_3d_rotary_pos_embed(
                embed_dim=cfg.attention_head_dim,
                crops_coords=crops,
                grid_size=grid,
                temporal_size=frames,
                device=self.device,
            )
        return self._rotary[key]

    def prepare_condition(self, canvas, known: torch.Tensor | None, batch: int) -> ChannelCondition:
        """The known latent cells, zeros elsewhere (CogVideoXImageToVideoPipeline's image latent padded
        with zeros), in the scale the model was trained with (1.5's VAE: `invert_scale_latents`)."""
        shape = (batch, self.latent_channels, *canvas.shape)
        if known is None:
            return ChannelCondition(torch.zeros(shape, device=self.device))
        cells = canvas.cell_mask().to(known.device)
        scale = 1.0 / self.scaling_factor**2 if self.vae.config.get("invert_scale_latents") else 1.0
        return ChannelCondition((known * cells * scale).expand(shape).to(self.device))

    def _check_size(self, height: int, width: int) -> None:
        cfg = self.transformer.config
        if cfg.use_learned_positional_embeddings and (height, width) != (cfg.sample_height, cfg.sample_width):
            s = self.spatial_factor
            raise UserError(
                f"{self.name!r} has learned positional embeddings for {cfg.sample_width * s}x"
                f"{cfg.sample_height * s} only; give --width {cfg.sample_width * s} --height {cfg.sample_height * s}"
            )

    def _denoise(
        self,
        latent: torch.Tensor,
        t_tokens: torch.Tensor,
        context: TextContext,
        condition: ChannelCondition | None = None,
    ) -> torch.Tensor:
        b, _, f, h, w = latent.shape
        self._check_size(h, w)
        t = t_tokens.flatten(1)[:, 0].tolist()  # one t per sample (RePaint made it so)
        index = [self._timestep_index(x) for x in t]
        alpha_bar = self.alphas_cumprod[index].view(b, 1, 1, 1, 1).to(latent.device, torch.float32)
        a, s = alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt()
        x = latent * (a + s)  # flow y → the model's x
        rotary = self._rotary_embedding(f, h, w) if self._uses_rotary else None
        ofs = torch.full((b,), 2.0, device=latent.device) if self._uses_ofs else None
        hidden = x if condition is None else torch.cat([x, condition.channels.to(x)], dim=1)
        v_pred = self.transformer(
            # (B, F, C, H, W), contiguous: the patch embedding runs measurably slower on a strided view.
            hidden_states=hidden.transpose(1, 2).to(self.dtype).contiguous(),
            encoder_hidden_states=context.embeds.to(self.dtype),
            timestep=torch.tensor(index, device=latent.device),
            ofs=ofs,
            image_rotary_emb=rotary,
            return_dict=False,
        )[0]
        v_pred = v_pred.transpose(1, 2).float()
        # Flow velocity ε − x0 with x0 = a·x − s·v and ε = s·x + a·v.
        return (s - a) * x + (a + s) * v_pred

    def _encode(self, video: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(video).latent_dist.mode() * self.scaling_factor

    def _decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latent / self.scaling_factor, return_dict=False)[0]
