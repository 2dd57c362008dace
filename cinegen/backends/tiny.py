"""Tiny randomly initialised diffusers pipelines of each family, built from config dicts, offline.

For tests and benchmarks: the same classes as the released models at a few thousand
parameters, with a small word-level T5 tokenizer built here (no download). `save_tiny(family,
dir)` writes a diffusers-format directory that `cinegen.backends.loading.load_backend` reads.
"""

from __future__ import annotations

from pathlib import Path

import torch

FAMILIES = ("wan", "ltx", "cogvideox")
# Image-to-video checkpoints whose denoiser takes the given frames as extra input channels.
IMAGE_TO_VIDEO = ("wan-i2v", "cogvideox-i2v")
WORDS = (
    "a red ball rolls left right on the green grass blue sky at night day cat dog runs jumps slowly fast "
    "small big over under sea waves sun moon tree house car city street rain snow"
).split()


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2} | {w: i + 3 for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def _t5(umt5: bool, dim: int = 32):
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    kwargs = dict(
        vocab_size=len(WORDS) + 3,
        d_model=dim,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    if umt5:
        return UMT5EncoderModel(UMT5Config(**kwargs)).eval()
    return T5EncoderModel(T5Config(**kwargs)).eval()


def _clip_vision(image_size: int = 32, dim: int = 16):
    """A tiny CLIP vision tower and its image processor (Wan 2.1 image-to-video's image encoder)."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    config = CLIPVisionConfig(
        hidden_size=dim,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=8,
        projection_dim=dim,
    )
    processor = CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size=image_size)
    return CLIPVisionModel(config).eval(), processor


def tiny_components(family: str, seed: int = 0) -> dict:
    """Components of a tiny `family` pipeline (random weights from `seed`); `family` is one of
    FAMILIES or IMAGE_TO_VIDEO."""
    torch.manual_seed(seed)
    extra = {}
    if family in ("wan", "wan-i2v"):
        i2v = family == "wan-i2v"
        from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel

        vae = AutoencoderKLWan(
            base_dim=3,
            z_dim=16,
            dim_mult=[1, 1, 1, 1],
            num_res_blocks=1,
            temperal_downsample=[False, True, True],
        )
        transformer = WanTransformer3DModel(
            patch_size=(1, 2, 2),
            num_attention_heads=2,
            attention_head_dim=12,
            in_channels=16 + 4 + 16 if i2v else 16,  # noisy latent, 4 mask channels, condition latent
            out_channels=16,
            text_dim=32,
            freq_dim=256,
            ffn_dim=32,
            num_layers=2,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            rope_max_seq_len=32,
            image_dim=16 if i2v else None,  # the CLIP tower's width
            added_kv_proj_dim=24 if i2v else None,  # the transformer's width (2 heads x 12)
        )
        scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
        encoder = _t5(umt5=True)
        if i2v:
            extra["image_encoder"], extra["image_processor"] = _clip_vision()
    elif family == "ltx":
        from diffusers import (
            AutoencoderKLLTXVideo,
            FlowMatchEulerDiscreteScheduler,
            LTXVideoTransformer3DModel,
        )

        vae = AutoencoderKLLTXVideo(
            in_channels=3,
            out_channels=3,
            latent_channels=8,
            block_out_channels=(8, 8, 8, 8),
            decoder_block_out_channels=(8, 8, 8, 8),
            layers_per_block=(1, 1, 1, 1, 1),
            decoder_layers_per_block=(1, 1, 1, 1, 1),
            spatio_temporal_scaling=(True, True, False, False),
            decoder_spatio_temporal_scaling=(True, True, False, False),
            decoder_inject_noise=(False, False, False, False, False),
            upsample_residual=(False, False, False, False),
            upsample_factor=(1, 1, 1, 1),
            timestep_conditioning=False,
            patch_size=1,
            patch_size_t=1,
            encoder_causal=True,
            decoder_causal=False,
        )
        vae.use_framewise_encoding = False
        vae.use_framewise_decoding = False
        transformer = LTXVideoTransformer3DModel(
            in_channels=8,
            out_channels=8,
            patch_size=1,
            patch_size_t=1,
            num_attention_heads=4,
            attention_head_dim=8,
            cross_attention_dim=32,
            num_layers=1,
            caption_channels=32,
        )
        scheduler = FlowMatchEulerDiscreteScheduler(
            use_dynamic_shifting=True,
            base_shift=0.95,
            max_shift=2.05,
            base_image_seq_len=1024,
            max_image_seq_len=4096,
            shift_terminal=0.1,
        )
        encoder = _t5(umt5=False)
    elif family in ("cogvideox", "cogvideox-i2v"):
        i2v = family == "cogvideox-i2v"
        from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel

        vae = AutoencoderKLCogVideoX(
            in_channels=3,
            out_channels=3,
            down_block_types=("CogVideoXDownBlock3D",) * 4,
            up_block_types=("CogVideoXUpBlock3D",) * 4,
            block_out_channels=(8, 8, 8, 8),
            latent_channels=4,
            layers_per_block=1,
            norm_num_groups=2,
            temporal_compression_ratio=4,
        )
        transformer = CogVideoXTransformer3DModel(
            num_attention_heads=4,
            attention_head_dim=8,
            in_channels=8 if i2v else 4,  # image-to-video: the image latent padded with zeros, on channels
            out_channels=4,
            time_embed_dim=2,
            ofs_embed_dim=2 if i2v else None,  # as CogVideoX 1.5 image-to-video (equal to time_embed_dim)
            text_embed_dim=32,
            num_layers=1,
            sample_width=2,
            sample_height=2,
            sample_frames=9,
            patch_size=2,
            temporal_compression_ratio=4,
            max_text_seq_length=16,
        )
        scheduler = CogVideoXDDIMScheduler(
            rescale_betas_zero_snr=True,
            timestep_spacing="trailing",
            prediction_type="v_prediction",
            snr_shift_scale=3.0,
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            set_alpha_to_one=True,
            clip_sample=False,
        )
        encoder = _t5(umt5=False)
    else:
        raise ValueError(f"family {family!r} not in {FAMILIES + IMAGE_TO_VIDEO}")
    return extra | {
        "transformer": transformer.eval(),
        "vae": vae.eval(),
        "scheduler": scheduler,
        "text_encoder": encoder,
        "tokenizer": tiny_tokenizer(),
    }


def pipeline_class(family: str, image: bool = False):
    import diffusers

    name = {
        "wan": "WanPipeline",
        "ltx": "LTXImageToVideoPipeline" if image else "LTXPipeline",
        "cogvideox": "CogVideoXPipeline",
        "wan-i2v": "WanImageToVideoPipeline",
        "cogvideox-i2v": "CogVideoXImageToVideoPipeline",
    }[family]
    return getattr(diffusers, name)


def tiny_pipeline(family: str, seed: int = 0, image: bool = False, **pipeline_config):
    """`pipeline_config`: the pipeline's own settings, e.g. `expand_timesteps=True` (Wan 2.2 TI2V)."""
    return pipeline_class(family, image)(**tiny_components(family, seed), **pipeline_config)


def save_tiny(family: str, directory: str | Path, seed: int = 0, **pipeline_config) -> Path:
    directory = Path(directory)
    tiny_pipeline(family, seed, **pipeline_config).save_pretrained(directory)
    return directory
