"""Prompts → embeddings for cross-attention models: the text encoder and tokenizer of a
Stable-Diffusion-style pipeline folder (``text_encoder/``, ``tokenizer/``).

The embeddings are what a converted cross-attention model takes as its condition, so
prompts compose as energies::

    encode = PromptEncoder.from_pretrained("path/to/pipeline")
    model = ebmflow_diffusers.convert("path/to/pipeline")
    a, b = (ebmflow.condition(model, e) for e in encode(["a cat", "a hat"]))
    product = a + b                        # both prompts
    guided = model.guided(encode("a cat")[0], 7.5, null=encode("")[0])

Needs ``transformers`` (the plugin's ``prompts`` extra). Only safetensors weights are read
(``use_safetensors=True``) and nothing is downloaded (``local_files_only=True``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import ebmflow


class PromptEncoder:
    """A tokenizer + text encoder: ``encoder(prompts) -> (B, L, D)`` embeddings
    (the encoder's last hidden state, as Stable Diffusion's pipelines use it).

    Args:
        tokenizer: a ``transformers`` tokenizer.
        text_encoder: a ``transformers`` text model (``CLIPTextModel``).
        max_length: tokens per prompt (padded and truncated to it); default the
            tokenizer's ``model_max_length``.
    """

    def __init__(self, tokenizer: Any, text_encoder: Any, max_length: int | None = None):
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder.eval()
        self.max_length = int(max_length or tokenizer.model_max_length)

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, **kwargs: Any) -> PromptEncoder:
        """The ``tokenizer/`` and ``text_encoder/`` of a pipeline folder."""
        try:
            import transformers
        except ImportError:
            raise ebmflow.ConfigError(
                "PromptEncoder needs transformers: pip install 'ebmflow-diffusers[prompts]'"
            ) from None
        folder = Path(folder)
        for part in ("tokenizer", "text_encoder"):
            if not (folder / part).is_dir():
                raise ebmflow.ConfigError(
                    f"PromptEncoder: {folder} has no {part}/ folder; a Stable-Diffusion-style "
                    f"pipeline folder holds tokenizer/ and text_encoder/"
                )
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            folder / "tokenizer", local_files_only=True
        )
        encoder = transformers.AutoModel.from_pretrained(
            folder / "text_encoder", local_files_only=True, use_safetensors=True
        )
        return cls(tokenizer, encoder, **kwargs)

    @torch.no_grad()
    def __call__(self, prompts: str | list[str]) -> Tensor:
        """Embeddings ``(B, L, D)`` of ``prompts`` (one string gives B = 1)."""
        if isinstance(prompts, str):
            prompts = [prompts]
        tokens = self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            return_tensors="pt",
        )
        device = next(self.text_encoder.parameters()).device
        return self.text_encoder(tokens.input_ids.to(device))[0]
