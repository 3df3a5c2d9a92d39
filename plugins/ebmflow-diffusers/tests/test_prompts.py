"""Prompt-level use of a Stable-Diffusion-style pipeline folder (tokenizer + text encoder +
VAE + cross-attention UNet), all tiny and built here: converted by ``ebmflow convert``, two
prompts composed as a product of energies and sampled with a MALA corrector. Needs
``transformers`` (the plugin's ``prompts`` extra); skipped without it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from diffusers import DDIMScheduler, StableDiffusionPipeline  # noqa: E402
from ebmflow_diffusers import EBMPipeline, EBMScheduler  # noqa: E402
from ebmflow_diffusers.prompts import PromptEncoder  # noqa: E402

import ebmflow  # noqa: E402
from ebmflow.cli import main as cli_main  # noqa: E402

# the tiny networks of the conditional-conversion tests (tests are not a package: imported by path)
_spec = importlib.util.spec_from_file_location(
    "_tiny_networks", Path(__file__).with_name("test_convert_conditional.py")
)
assert _spec is not None and _spec.loader is not None
_tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tiny)
text_unet, vae = _tiny.text_unet, _tiny.vae

VOCAB = [
    *"lowerstidnach",
    *("lo", "ca", "ha", "l</w>", "w</w>", "r</w>", "t</w>", "a</w>"),
    *("low</w>", "er</w>", "cat</w>", "hat</w>"),
    *("<unk>", "<|startoftext|>", "<|endoftext|>"),
]
MERGES = ["#version: 0.2", "l o", "lo w</w>", "e r</w>", "c a", "ca t</w>", "h a", "ha t</w>"]


def tiny_clip(tmp_path):
    """A CLIP tokenizer on a 31-token BPE vocabulary and a one-layer 12-wide text encoder."""
    (tmp_path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(VOCAB)}))
    (tmp_path / "merges.txt").write_text("\n".join(MERGES) + "\n")
    tokenizer = transformers.CLIPTokenizer(
        str(tmp_path / "vocab.json"),
        str(tmp_path / "merges.txt"),
        model_max_length=8,
        pad_token="<|endoftext|>",
    )
    config = transformers.CLIPTextConfig(
        vocab_size=len(VOCAB),
        hidden_size=12,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=8,
        bos_token_id=VOCAB.index("<|startoftext|>"),
        eos_token_id=VOCAB.index("<|endoftext|>"),
        pad_token_id=VOCAB.index("<|endoftext|>"),
    )
    with torch.random.fork_rng():  # transformers initialises weights from the global RNG
        torch.manual_seed(0)
        return tokenizer, transformers.CLIPTextModel(config).eval()


@pytest.fixture
def sd_folder(tmp_path):
    tokenizer, text_encoder = tiny_clip(tmp_path)
    pipe = StableDiffusionPipeline(
        vae=vae(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=text_unet(),
        scheduler=DDIMScheduler(steps_offset=1, clip_sample=False),  # as SD's pipeline wants
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(tmp_path / "sd")
    return tmp_path / "sd"


def test_prompts_become_embeddings_the_converted_model_takes(sd_folder, tmp_path):
    assert cli_main(["convert", str(sd_folder), str(tmp_path / "out")]) == 0
    model = ebmflow.load(tmp_path / "out")
    encode = PromptEncoder.from_pretrained(sd_folder)
    emb = encode(["a cat", "a hat"])
    assert emb.shape == (2, 8, 12) and not torch.equal(emb[0], emb[1])
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    ac = float(model.table.alphas_cumprod[300])
    sigma = ((1 - ac) / ac) ** 0.5
    with torch.no_grad():
        out = model.unet(ac**0.5 * x, torch.tensor(300), emb).sample
        got = model.score(x, sigma, y=emb)
    assert torch.allclose(got, -out / sigma, rtol=1e-4, atol=1e-5)


def test_two_prompts_composed_and_sampled_with_a_mala_corrector(sd_folder):
    model = ebmflow.create("converter", "diffusers", source=str(sd_folder))
    encode = PromptEncoder.from_pretrained(sd_folder)
    cat, hat = (ebmflow.condition(model, e) for e in encode(["a cat", "a hat"]))
    product = cat + hat
    guided = model.guided(encode("a cat")[0], 3.0, null=encode("")[0])
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(product.score(x, 1.0), cat.score(x, 1.0) + hat.score(x, 1.0))
    assert guided.score(x, 1.0).shape == x.shape
    scheduler = EBMScheduler.from_config(
        DDIMScheduler().config,
        corrector="mala",
        corrector_steps=1,
        snr=0.1,
        energy_rule="simpson",
        energy_points=3,
    )
    pipe = EBMPipeline(None, scheduler)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        energy=product,
        batch_size=2,
        num_inference_steps=3,
        generator=torch.Generator().manual_seed(2),
        output_type="latent",
    )
    assert out.images.shape == (2, 4, 8, 8) and torch.isfinite(out.images).all()
    assert len(out.acceptance_rates) == 3 and all(0 <= r <= 1 for r in out.acceptance_rates)
    images = model.decode(out.images)
    assert images.shape == (2, 3, 16, 16) and torch.isfinite(images).all()


def test_a_folder_without_a_text_encoder_is_named(tmp_path):
    (tmp_path / "tokenizer").mkdir()
    with pytest.raises(ebmflow.ConfigError, match="has no text_encoder/ folder"):
        PromptEncoder.from_pretrained(tmp_path)
