"""Loading open models: recognition, clear errors, `cinegen models`, CLI flags, the server's model."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

pytest.importorskip("diffusers")

from cinegen.backends.diffusers_common import Options, renoise_known  # noqa: E402
from cinegen.backends.loading import load_backend  # noqa: E402
from cinegen.backends.tiny import save_tiny  # noqa: E402
from cinegen.cli import build_parser, main  # noqa: E402
from cinegen.errors import UserError  # noqa: E402


@pytest.fixture(scope="module")
def ltx_dir(tmp_path_factory):
    return save_tiny("ltx", tmp_path_factory.mktemp("models") / "tiny-ltx")


def test_loads_a_diffusers_directory_with_options(ltx_dir):
    backend = load_backend(ltx_dir, "cpu", torch.float32, offload=True, options=Options(vae_tiling=True))
    assert backend.family == "ltx" and backend.options.offload and backend.vae.use_tiling
    ctx = backend.encode_text(["a cat", "a cat", "a dog"], 8.0)
    assert torch.equal(ctx.embeds[0], ctx.embeds[1]) and not torch.equal(ctx.embeds[0], ctx.embeds[2])


def test_clear_errors_for_unsupported_or_broken_directories(tmp_path, ltx_dir):
    with pytest.raises(UserError, match="does not exist"):
        load_backend(tmp_path / "nope", "cpu", torch.float32)
    with pytest.raises(UserError, match="not a model directory"):
        load_backend(tmp_path, "cpu", torch.float32)
    other = tmp_path / "sd"
    other.mkdir()
    (other / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(UserError, match="StableDiffusionPipeline.*supported"):
        load_backend(other, "cpu", torch.float32)
    vace = tmp_path / "wan-vace"
    vace.mkdir()
    (vace / "model_index.json").write_text(json.dumps({"_class_name": "WanVACEPipeline"}))
    with pytest.raises(UserError, match="does not run yet"):
        load_backend(vace, "cpu", torch.float32)
    broken = tmp_path / "broken"
    shutil.copytree(ltx_dir, broken)
    shutil.rmtree(broken / "vae")
    with pytest.raises(UserError, match="missing its vae"):
        load_backend(broken, "cpu", torch.float32)
    weights = next((broken / "transformer").glob("*.safetensors"))
    weights.unlink()
    shutil.copytree(ltx_dir / "vae", broken / "vae")
    with pytest.raises(UserError, match="could not load"):
        load_backend(broken, "cpu", torch.float32)


def test_models_command_lists_and_checks(ltx_dir, capsys, tmp_path):
    assert main(["models", "--dir", str(ltx_dir.parent), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    ours = [r for r in rows if r["path"] == str(ltx_dir)]
    assert ours and ours[0]["family"] == "ltx" and ours[0]["status"] == "ok"
    assert main(["models", "--check", str(ltx_dir)]) == 0
    assert "ltx" in capsys.readouterr().out
    assert main(["models", "--check", str(tmp_path)]) == 2
    assert "not a model directory" in capsys.readouterr().err


def test_image_to_video_checkpoints_are_recognised_and_listed(tmp_path, capsys):
    """WanImageToVideoPipeline and CogVideoXImageToVideoPipeline directories load as their family,
    with the image on condition channels, and `cinegen models` lists them as runnable."""
    folder = tmp_path / "models"
    for family in ("wan-i2v", "cogvideox-i2v"):
        directory = save_tiny(family, folder / family)
        index = json.loads((directory / "model_index.json").read_text())
        assert index["_class_name"].endswith("ImageToVideoPipeline")
        backend = load_backend(directory, "cpu", torch.float32)
        assert backend.family == family.removesuffix("-i2v") and backend.condition_channels
    assert main(["models", "--dir", str(folder), "--json"]) == 0
    rows = {r["name"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows["wan-i2v"]["family"] == "wan" and rows["cogvideox-i2v"]["family"] == "cogvideox"
    assert rows["wan-i2v"]["status"] == rows["cogvideox-i2v"]["status"] == "ok"
    assert rows["wan-i2v"]["pipeline"] == "WanImageToVideoPipeline"
    assert main(["models", "--dir", str(folder)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["name", "family", "pipeline", "status", "path"]
    assert any(line.split()[:4] == ["cogvideox-i2v", "cogvideox", "CogVideoXImageToVideoPipeline", "ok"]
               for line in table[1:])


def test_generation_commands_take_memory_options():
    args = build_parser().parse_args(
        ["generate", "a cat", "--offload", "--vae-tiling", "--dtype", "bf16", "--step-cache", "1"]
    )
    assert args.offload and args.vae_tiling and not args.vae_slicing and args.dtype == "bf16"
    from cinegen.cli import memory_options

    assert memory_options(args) == {
        "offload": True,
        "vae_tiling": True,
        "vae_slicing": False,
        "compile": False,
        "step_cache": 1,
    }


def test_server_names_an_open_model(ltx_dir):
    from cinegen.serve.settings import Settings

    assert Settings(model_dir=ltx_dir).model == "tiny-ltx"


def test_renoise_moves_known_cells_to_the_current_t():
    latent = torch.randn(1, 2, 2, 4, 4)
    t_tokens = torch.full((1, 2, 2, 2), 0.7)
    t_tokens[:, 0] = 0.0  # first latent frame known, exact
    out, t = renoise_known(latent, t_tokens, patch=2)
    assert torch.allclose(t, torch.tensor([0.7]))
    assert torch.equal(out[:, :, 1], latent[:, :, 1])  # generated cells untouched
    noise = (out[:, :, 0] - 0.3 * latent[:, :, 0]) / 0.7  # (1 − t)·x0 + t·ε with a fixed ε
    out2, _ = renoise_known(latent * 2, t_tokens, patch=2)
    assert torch.allclose((out2[:, :, 0] - 0.6 * latent[:, :, 0]) / 0.7, noise, atol=1e-5)
