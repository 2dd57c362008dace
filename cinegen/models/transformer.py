"""Spacetime DiT: a pure function `forward(latent, t, text, fps) -> velocity`.

- Patches of 1x2x2 latent cells become tokens; 3D rotary positions with separate bands for
  time, height and width, so one model takes any size, aspect and length.
- The timestep is per token (known tokens of a canvas carry t≈0), fed through adaLN-zero.
  The modulation is computed once per token and shared by all blocks with a learned
  per-block offset ("adaLN-single", PixArt-α, arXiv 2310.00426): per-token modulation
  would otherwise cost 6·D² per token in every block.
- Self-attention over all spacetime tokens with RMS QK-norm (SD3, arXiv 2403.03206),
  cross-attention to the text tokens, GELU MLP; attention through PyTorch SDPA.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from cinegen.config import DenoiserConfig


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of t in [0, 1] (scaled by 1000 like DDPM-era models), any shape -> (..., dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000.0 * t.float()[..., None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def rope_frequencies(
    positions: torch.Tensor, split: tuple[int, int, int], theta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables for 3D rotary embedding. positions: (L, 3) -> (L, sum(split)) each."""
    angles = []
    for axis, pairs in enumerate(split):
        freqs = theta ** (-torch.arange(pairs, dtype=torch.float32, device=positions.device) / pairs)
        angles.append(positions[:, axis : axis + 1].float() * freqs)
    angle = torch.cat(angles, dim=-1)
    return angle.cos(), angle.sin()


def token_positions(grid: tuple[int, int, int], side_range: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """(t, h, w) position of every token, (L, 3) float, in raster order.

    `side_range` is the (shortest, longest) shorter side in tokens of the frames the model trained
    on. A frame whose shorter side is outside it has its h and w positions scaled by one factor
    (position interpolation, arXiv 2306.15595; stretched below the range) so that side spans the
    nearer end: the model draws objects a size in positions that it learned relative to the frame.
    """
    gt, gh, gw = grid
    positions = torch.stack(
        torch.meshgrid(torch.arange(gt), torch.arange(gh), torch.arange(gw), indexing="ij"), dim=-1
    ).reshape(-1, 3).float()
    shortest, longest = side_range
    short = min(gh, gw)
    target = min(max(short, shortest), longest or short)  # the shorter side clamped into the range
    positions[:, 1:] *= target / short
    return positions


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[2i], x[2i+1]). x: (B, heads, L, head_dim); cos/sin: (L, head_dim/2)."""
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)
    return out.type_as(x)


@dataclass
class Modulation:
    """adaLN parameters for one sub-layer, per token: (B, L, D) each."""

    shift: torch.Tensor
    scale: torch.Tensor
    gate: torch.Tensor

    def modulate(self, x: torch.Tensor) -> torch.Tensor:
        return x * (1 + self.scale) + self.shift


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.RMSNorm(dim // heads, eps=1e-6)
        self.k_norm = nn.RMSNorm(dim // heads, eps=1e-6)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.heads)
        q = apply_rope(self.q_norm(q), cos, sin)
        k = apply_rope(self.k_norm(k), cos, sin)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.out(rearrange(y, "b h l d -> b l (h d)"))


class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.q_norm = nn.RMSNorm(dim // heads, eps=1e-6)
        self.k_norm = nn.RMSNorm(dim // heads, eps=1e-6)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor) -> torch.Tensor:
        q = self.q_norm(rearrange(self.q(x), "b l (h d) -> b h l d", h=self.heads))
        k, v = rearrange(self.kv(context), "b s (two h d) -> two b h s d", two=2, h=self.heads)
        k = self.k_norm(k)
        # context_mask: (B, S) bool, True = real token; broadcast over heads and queries.
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=context_mask[:, None, None, :])
        return self.out(rearrange(y, "b h l d -> b l (h d)"))


class DiTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.cross = CrossAttention(dim, heads)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        # adaLN-single: this block's learned offset to the shared modulation (6 vectors).
        self.modulation_offset = nn.Parameter(torch.zeros(6, dim))

    def forward(self, x, modulation, cos, sin, context, context_mask):  # x: (B, L, D); modulation: (B, L, 6, D)
        mod = modulation + self.modulation_offset
        attn = Modulation(*mod[:, :, 0:3].unbind(2))
        mlp = Modulation(*mod[:, :, 3:6].unbind(2))
        x = x + attn.gate * self.attn(attn.modulate(self.norm1(x)), cos, sin)
        x = x + self.cross(self.norm2(x), context, context_mask)
        x = x + mlp.gate * self.mlp(mlp.modulate(self.norm3(x)))
        return x  # (B, L, D)


class SpacetimeDiT(nn.Module):
    def __init__(self, config: DenoiserConfig):
        super().__init__()
        self.config = config
        d, p, c = config.dim, config.patch_size, config.latent_channels
        self.patch_embed = nn.Linear(c * p * p, d)
        self.time_embed = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        self.fps_embed = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        self.pooled_text_embed = nn.Sequential(nn.Linear(config.text_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.text_proj = nn.Sequential(nn.Linear(config.text_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.blocks = nn.ModuleList(DiTBlock(d, config.heads, config.mlp_ratio) for _ in range(config.depth))
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        self.final = nn.Linear(d, c * p * p)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.time_embed[0].weight, std=0.02)
        nn.init.normal_(self.fps_embed[0].weight, std=0.02)
        # adaLN-zero (DiT, arXiv 2212.09748): zero modulation makes every block start as the
        # identity, and a zero output layer makes the untrained model predict v = 0.
        nn.init.zeros_(self.modulation[1].weight)
        nn.init.zeros_(self.final_modulation[1].weight)
        nn.init.zeros_(self.final.weight)

    @torch.no_grad()
    def load_narrower(self, state: dict[str, torch.Tensor]) -> None:
        """Start as a denoiser of fewer latent channels: tokens are flattened channel-major, so that
        model's channels are the first columns of the patch embedding and the first rows of the
        output; the new ones get zero weight in and out, and the output is that model's."""
        own = self.state_dict()
        old_width = state["patch_embed.weight"].shape[1]
        own["patch_embed.weight"].zero_()[:, :old_width] = state["patch_embed.weight"]
        for name in ("final.weight", "final.bias"):
            own[name].zero_()[:old_width] = state[name]
        widened = {"patch_embed.weight", "final.weight", "final.bias"}
        self.load_state_dict({name: own[name] if name in widened else state[name] for name in own})

    @torch.no_grad()
    def narrowed_state(self, channels: int) -> dict[str, torch.Tensor]:
        """The weights of this denoiser for its first `channels` latent channels alone (the inverse
        of `load_narrower`): what it predicts for them when the others are zero."""
        width = channels * self.config.patch_size**2
        state = {name: value.clone() for name, value in self.state_dict().items()}
        state["patch_embed.weight"] = state["patch_embed.weight"][:, :width]
        for name in ("final.weight", "final.bias"):
            state[name] = state[name][:width]
        return state

    def token_grid(self, latent_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        t, h, w = latent_shape
        p = self.config.patch_size
        assert h % p == 0 and w % p == 0, f"latent H, W must be multiples of the patch size {p}"
        return t, h // p, w // p

    def forward(
        self,
        latent: torch.Tensor,  # (B, C, T, H, W)
        t: torch.Tensor,  # (B,) or (B, T, H/p, W/p): per-token noise level in [0, 1]
        text: torch.Tensor,  # (B, S, text_dim) token states
        text_mask: torch.Tensor,  # (B, S) bool
        text_pooled: torch.Tensor,  # (B, text_dim)
        fps: torch.Tensor,  # (B,)
    ) -> torch.Tensor:
        b, _, T, H, W = latent.shape
        p = self.config.patch_size
        gt, gh, gw = self.token_grid((T, H, W))
        x = self.patch_embed(rearrange(latent, "b c t (h p1) (w p2) -> b (t h w) (c p1 p2)", p1=p, p2=p))

        if t.ndim == 1:
            t = t[:, None, None, None].expand(b, gt, gh, gw)
        assert t.shape == (b, gt, gh, gw), f"t must be (B,) or (B, {gt}, {gh}, {gw}), got {tuple(t.shape)}"
        t_tokens = rearrange(t, "b t h w -> b (t h w)")
        global_cond = self.fps_embed(timestep_embedding(fps / 1000.0, 256)) + self.pooled_text_embed(text_pooled)
        cond = self.time_embed(timestep_embedding(t_tokens, 256)) + global_cond[:, None]  # (B, L, D)
        modulation = self.modulation(cond).unflatten(-1, (6, -1))  # (B, L, 6, D)

        grid = token_positions((gt, gh, gw), self.config.rope_side_range).to(latent.device)
        cos, sin = rope_frequencies(grid, self.config.rope_split, self.config.rope_theta)
        context = self.text_proj(text)
        for block in self.blocks:
            x = block(x, modulation, cos, sin, context, text_mask)

        shift, scale = self.final_modulation(cond).chunk(2, dim=-1)
        x = self.final(self.final_norm(x) * (1 + scale) + shift)
        return rearrange(x, "b (t h w) (c p1 p2) -> b c t (h p1) (w p2)", t=gt, h=gh, w=gw, p1=p, p2=p)
