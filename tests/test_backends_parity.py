"""Parity: cinegen's sampler on each open family matches the family's own diffusers pipeline.

Tiny randomly initialised configs (cinegen.backends.tiny), saved to a diffusers directory and
loaded back through `Pipeline.load`; the diffusers pipeline gets the same components, noise
(the seed's latent noise), steps, guidance and scheduler. Max |Δ| of the final latents ≤ 1e-3.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers")

from cinegen.backends.tiny import pipeline_class, save_tiny  # noqa: E402
from cinegen.canvas import keep_frames  # noqa: E402
from cinegen.pipeline import GenerateRequest, Pipeline  # noqa: E402
from cinegen.sampling import Guidance, sample  # noqa: E402

PROMPT, NEGATIVE = "a red ball rolls left on the green grass", "dog"
STEPS, GUIDANCE, SEED = 4, 5.0, 3
SIZE = {"wan": (32, 32, 9), "ltx": (32, 32, 9), "cogvideox": (32, 32, 9)}  # width, height, frames
TOL = 1e-3


@pytest.fixture(scope="module", params=["wan", "ltx", "cogvideox"])
def family_setup(request, tmp_path_factory):
    family = request.param
    directory = save_tiny(family, tmp_path_factory.mktemp(family))
    pipe = Pipeline.load(directory, device="cpu", dtype="fp32")
    return family, pipe, directory


def request(family: str, **extra) -> GenerateRequest:
    """The request every comparison makes (the family's test size, steps, guidance, seed)."""
    width, height, frames = SIZE[family]
    return GenerateRequest(
        prompt=PROMPT,
        negative=NEGATIVE,
        width=width,
        height=height,
        frames=frames,
        steps=STEPS,
        guidance=GUIDANCE,
        seed=SEED,
        **extra,
    )


def diffusers_kwargs(
    family: str, pipe: Pipeline, noise: torch.Tensor, width: int, height: int, frames: int
) -> dict:
    kwargs = dict(
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        num_inference_steps=STEPS,
        guidance_scale=GUIDANCE,
        width=width,
        height=height,
        num_frames=frames,
        output_type="latent",
    )
    if family == "wan":
        kwargs["latents"] = noise
    elif family == "ltx":
        kwargs["latents"] = noise.flatten(2).transpose(1, 2)  # packed (B, L, C), patch 1
        kwargs["frame_rate"] = int(pipe.defaults.fps)
    else:
        kwargs["latents"] = noise.transpose(1, 2)  # (B, F, C, H, W)
        kwargs["max_sequence_length"] = pipe.backend.max_sequence_length
    return kwargs


def diffusers_latents(family: str, out: torch.Tensor, latent_shape) -> torch.Tensor:
    if family == "ltx":
        f, h, w = latent_shape
        return out.transpose(1, 2).reshape(out.shape[0], -1, f, h, w)
    if family == "cogvideox":
        return out.transpose(1, 2)
    return out


def test_text_to_video_matches_diffusers_pipeline(family_setup):
    family, pipe, _ = family_setup
    width, height, frames = SIZE[family]
    req = request(family)
    ours = pipe.run(req).latents
    geometry = pipe.validate(req)
    noise = pipe.noise(geometry, SEED, 1).cpu()
    reference = pipeline_class(family)(**pipe.backend.components)
    out = reference(**diffusers_kwargs(family, pipe, noise, width, height, frames))[0]
    theirs = diffusers_latents(family, out, geometry.latent)
    assert theirs.shape == ours.shape
    diff = (ours - theirs.float()).abs().max().item()
    print(f"parity {family} text->video max|diff| = {diff:.2e}")
    assert diff <= TOL
    # A different seed must give a different result (the comparison is not vacuous).
    assert (
        pipe.run(GenerateRequest(**(req.to_dict() | {"seed": SEED + 1}))).latents - theirs
    ).abs().max() > 1e-2


def test_ltx_image_to_video_matches_diffusers_pipeline(tmp_path):
    directory = save_tiny("ltx", tmp_path / "ltx")
    pipe = Pipeline.load(directory, device="cpu", dtype="fp32")
    backend = pipe.backend
    width, height, frames = SIZE["ltx"]
    image = torch.rand(1, 3, 1, height, width, generator=torch.Generator().manual_seed(1)) * 2 - 1
    first = backend.encode_video(image)  # (1, C, 1, h, w)
    req = request("ltx")
    geometry = pipe.validate(req)
    noise = pipe.noise(geometry, SEED, 1)
    known = torch.zeros(noise.shape[1:])
    known[:, :1] = first[0]
    canvas = keep_frames(geometry.latent, known, [0], patch=backend.patch)
    cond = backend.encode_text([PROMPT], geometry.fps)
    uncond = backend.encode_text([NEGATIVE], geometry.fps)
    ours = sample(backend, canvas, noise, cond, uncond, steps=STEPS, guidance=Guidance(text=GUIDANCE))

    start = noise.clone()
    start[:, :, :1] = first
    reference = pipeline_class("ltx", image=True)(**backend.components)
    kwargs = diffusers_kwargs("ltx", pipe, start, width, height, frames)
    out = reference(image=torch.zeros(1, 3, height, width), **kwargs)[0]
    theirs = diffusers_latents("ltx", out, geometry.latent)
    diff = (ours - theirs.float()).abs().max().item()
    print(f"parity ltx image->video max|diff| = {diff:.2e}")
    assert diff <= TOL
    assert torch.equal(ours[:, :, 0], first[:, :, 0])  # the given frame is kept exactly


def test_wan_per_token_timesteps_match_the_ti2v_pipeline(tmp_path):
    """Wan 2.2 TI2V (`expand_timesteps`): the denoiser takes a timestep per token."""
    directory = save_tiny("wan", tmp_path / "wan-ti2v", expand_timesteps=True)
    pipe = Pipeline.load(directory, device="cpu", dtype="fp32")
    assert pipe.backend.per_token_t
    width, height, frames = SIZE["wan"]
    req = request("wan")
    ours = pipe.run(req).latents
    noise = pipe.noise(pipe.validate(req), SEED, 1).cpu()
    reference = pipeline_class("wan")(**pipe.backend.components, expand_timesteps=True)
    theirs = reference(**diffusers_kwargs("wan", pipe, noise, width, height, frames))[0]
    diff = (ours - theirs.float()).abs().max().item()
    print(f"parity wan ti2v (per-token t) text->video max|diff| = {diff:.2e}")
    assert diff <= TOL


@pytest.mark.parametrize("family", ["wan-i2v", "cogvideox-i2v"])
def test_image_to_video_checkpoints_match_their_diffusers_pipeline(family, tmp_path, monkeypatch):
    """Wan / CogVideoX image-to-video checkpoints (the image on extra input channels; Wan 2.1 also
    CLIP image tokens): `generate --image` through the pipeline vs WanImageToVideoPipeline /
    CogVideoXImageToVideoPipeline with the same image, noise, steps, guidance and scheduler.
    cinegen keeps the given latent frame exactly; the frames it generates must match."""
    import numpy as np
    from PIL import Image

    from cinegen.data import to_video

    directory = save_tiny(family, tmp_path / family)
    pipe = Pipeline.load(directory, device="cpu", dtype="fp32")
    assert pipe.backend.condition_channels
    base = family.removesuffix("-i2v")
    width, height, frames = SIZE[base]
    image = (np.random.default_rng(1).random((height, width, 3)) * 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "first.png")
    req = request(base, image=str(tmp_path / "first.png"))
    ours = pipe.run(req).latents
    geometry = pipe.validate(req)
    noise = pipe.noise(geometry, SEED, 1).cpu()
    if base == "cogvideox":  # its pipeline samples the image latent; cinegen (and this test) take the mode
        from diffusers.pipelines.cogvideo import pipeline_cogvideox_image2video as module

        monkeypatch.setattr(module, "retrieve_latents", lambda out, generator=None: out.latent_dist.mode())
    else:  # its prompt cleaning calls ftfy unguarded; WanPipeline's (which cinegen uses) skips it if absent
        from diffusers.pipelines.wan import pipeline_wan, pipeline_wan_i2v

        monkeypatch.setattr(pipeline_wan_i2v, "prompt_clean", pipeline_wan.prompt_clean)
    reference = pipeline_class(family)(**pipe.backend.components)
    out = reference(image=Image.fromarray(image), **diffusers_kwargs(base, pipe, noise, width, height, frames))[0]
    theirs = diffusers_latents(base, out, geometry.latent).float()
    assert theirs.shape == ours.shape
    diff = (ours[:, :, 1:] - theirs[:, :, 1:]).abs().max().item()
    first = pipe.backend.encode_video(to_video(image[None])[None])
    print(
        f"parity {family} image->video max|diff| = {diff:.2e} (generated latent frames); "
        f"given frame: cinegen keeps it exactly, the pipeline's regeneration is "
        f"{(theirs[:, :, :1] - first).abs().max().item():.2e} from it"
    )
    assert diff <= TOL
    assert torch.equal(ours[:, :, :1], first)  # the given frame is kept exactly
    # Not vacuous: another image moves the generated frames far more than the two runs differ.
    Image.fromarray(255 - image).save(tmp_path / "other.png")
    other = pipe.run(GenerateRequest(**(req.to_dict() | {"image": str(tmp_path / "other.png")}))).latents
    effect = (other - ours)[:, :, 1:].abs().max().item()
    assert effect > TOL and effect > 100 * diff
