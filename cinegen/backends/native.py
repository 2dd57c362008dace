"""The native cinegen model: causal VAE + spacetime DiT + a frozen text encoder.

A model directory holds `config.json` (`ModelConfig`) and `model.safetensors` with the
autoencoder under `autoencoder.` and the denoiser under `denoiser.`.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from cinegen.config import ModelConfig
from cinegen.errors import UserError
from cinegen.flow import shift_for_tokens
from cinegen.models.autoencoder import CausalVAE
from cinegen.models.transformer import SpacetimeDiT
from cinegen.text import TextEmbedding, TextEncoder

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TEXT_CACHE_PROMPTS = 64  # embeddings kept (32 tokens × 384 floats each: 3 MB for 64)


@dataclass
class NativeContext:
    tokens: torch.Tensor  # (B, S, D)
    mask: torch.Tensor  # (B, S)
    pooled: torch.Tensor  # (B, D)
    fps: torch.Tensor  # (B,)


def read_config(model_dir: str | Path) -> ModelConfig:
    """The `ModelConfig` of a model directory, checking that its weights file is there too."""
    model_dir = Path(model_dir)
    config_path, weights_path = model_dir / CONFIG_FILE, model_dir / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise UserError(f"model directory {str(model_dir)!r} needs {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        data = json.loads(config_path.read_text())
        if not isinstance(data, dict):
            raise TypeError(f"a JSON object of settings is needed, not {type(data).__name__}")
        return ModelConfig.from_dict(data)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as e:
        raise UserError(f"{str(config_path)!r} is not a valid cinegen model config ({e})") from None


class NativeBackend:
    def __init__(
        self,
        config: ModelConfig,
        vae: CausalVAE,
        dit: SpacetimeDiT,
        text_encoder: TextEncoder | None,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
    ):
        self.name = config.name
        self.config = config
        self.vae, self.dit, self.text_encoder = vae, dit, text_encoder
        self.latent_channels = config.autoencoder.latent_channels
        self.spatial_factor = config.autoencoder.spatial_factor
        self.time_factor = config.autoencoder.time_factor
        self.patch = config.denoiser.patch_size
        self.device, self.dtype = device, dtype
        self._text_cache: OrderedDict[str, TextEmbedding] = OrderedDict()

    @property
    def defaults(self):  # SamplingDefaults
        return self.config.sampling

    @property
    def size_multiple(self) -> int:
        return self.spatial_factor * self.patch

    # -- loading ------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        text_encoder: bool = True,
    ) -> NativeBackend:
        model_dir = Path(model_dir)
        config, weights_path = read_config(model_dir), model_dir / WEIGHTS_FILE
        # Build on the meta device (no memory, no init work), then take the stored tensors as-is.
        with torch.device("meta"):
            vae, dit = CausalVAE(config.autoencoder), SpacetimeDiT(config.denoiser)
        try:
            state = load_file(weights_path)
        except (SafetensorError, OSError) as e:
            raise UserError(f"{str(weights_path)!r} is not a readable safetensors file ({e})") from None
        for prefix, module in (("autoencoder.", vae), ("denoiser.", dit)):
            part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            expected = module.state_dict()
            missing, unexpected = sorted(set(expected) - set(part)), sorted(set(part) - set(expected))
            if missing or unexpected:
                raise UserError(
                    f"{str(weights_path)!r} does not match its config: missing {missing[:3]}, "
                    f"unexpected {unexpected[:3]}"
                )
            for key, value in part.items():
                if value.shape != expected[key].shape:
                    raise UserError(
                        f"{str(weights_path)!r}: {prefix}{key} has shape {tuple(value.shape)}, "
                        f"the config needs {tuple(expected[key].shape)}"
                    )
            module.load_state_dict(part, assign=True)
        vae, dit = vae.to(device, torch.float32).eval(), dit.to(device, dtype).eval()
        encoder = (
            TextEncoder(config.text_encoder.name, config.text_encoder.max_tokens, device)
            if text_encoder
            else None
        )
        return cls(config, vae, dit, encoder, device, dtype)

    @staticmethod
    def save(model_dir: str | Path, config: ModelConfig, vae: CausalVAE, dit: SpacetimeDiT) -> None:
        model_dir = Path(model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)

        # Large tensors in fp16 keep the shipped model under 25 MB; they load back as float32.
        def pack(v: torch.Tensor) -> torch.Tensor:
            v = v.detach().cpu()
            return (v.half() if v.is_floating_point() and v.numel() >= 1024 else v).contiguous()

        state = {f"autoencoder.{k}": pack(v) for k, v in vae.state_dict().items()}
        state |= {f"denoiser.{k}": pack(v) for k, v in dit.state_dict().items()}
        tmp = model_dir / (WEIGHTS_FILE + ".tmp")
        save_file(state, tmp, metadata={"format": "pt", "model": config.name})
        tmp.replace(model_dir / WEIGHTS_FILE)
        (model_dir / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2) + "\n")

    # -- the Backend interface ------------------------------------------------------------

    def make_context(self, text: TextEmbedding, fps: float) -> NativeContext:
        b = text.tokens.shape[0]
        return NativeContext(
            text.tokens.to(self.device),
            text.mask.to(self.device),
            text.pooled.to(self.device),
            torch.full((b,), float(fps), device=self.device),
        )

    def encode_text(self, prompts: list[str], fps: float) -> NativeContext:
        assert self.text_encoder is not None, "backend loaded without a text encoder"
        rows = [self._prompt_embedding(p) for p in prompts]
        text = TextEmbedding(*(torch.cat([getattr(r, f) for r in rows]) for f in ("tokens", "mask", "pooled")))
        return self.make_context(text, fps)

    def _prompt_embedding(self, prompt: str) -> TextEmbedding:
        # The encoder is frozen, so a prompt's embedding never changes: the unconditional "" of
        # every guided job, and a prompt seen again (draft then finalize, a server's repeats),
        # are encoded once. One prompt at a time, so an embedding never depends on its batch.
        if prompt in self._text_cache:
            self._text_cache.move_to_end(prompt)
        else:
            self._text_cache[prompt] = self.text_encoder.encode([prompt])
            if len(self._text_cache) > TEXT_CACHE_PROMPTS:
                self._text_cache.popitem(last=False)
        return self._text_cache[prompt]

    @torch.no_grad()
    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(video.to(self.device, torch.float32))

    @torch.no_grad()
    def decode_latent(self, latent: torch.Tensor) -> torch.Tensor:
        return self.vae.decode_chunked(latent.to(self.device, torch.float32)).clamp(-1, 1)

    @torch.no_grad()
    def velocity(self, latent: torch.Tensor, t_tokens: torch.Tensor, context: NativeContext) -> torch.Tensor:
        v = self.dit(
            latent.to(self.dtype),
            t_tokens.to(self.dtype),
            context.tokens.to(self.dtype),
            context.mask,
            context.pooled.to(self.dtype),
            context.fps.to(self.dtype),
        )
        return v.float()

    def time_shift(self, tokens: int) -> float:
        return shift_for_tokens(tokens)
