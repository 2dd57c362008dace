import contextlib
import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cinegen.config import MODEL_PRESETS, DataConfig, TrainConfig
from cinegen.data import LatentCache, WorldSource, make_buckets
from cinegen.errors import UserError
from cinegen.models.autoencoder import CausalVAE
from cinegen.models.transformer import SpacetimeDiT
from cinegen.pipeline import GenerateRequest, Pipeline
from cinegen.text import TextEmbedding
from cinegen.train import CHECKPOINT, STAGES, denoiser_loss, learning_rate, load_init, train

TINY_DATA = DataConfig(sizes=((32, 32), (48, 32)), latent_frames=(1, 2), fps=(8.0,), caption_pool=12, heldout="")


def config(out_dir, stage="autoencoder", steps=3, **kw) -> TrainConfig:
    settings = dict(model="test", batch_size=2, lr=1e-3, warmup=1, checkpoint_every=2, log_every=1, data=TINY_DATA,
                    cache_clips=8)
    return TrainConfig(stage=stage, steps=steps, out_dir=str(out_dir), **settings | kw)


def weights(run_dir):
    return torch.load(run_dir / CHECKPOINT, weights_only=False)["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)


def assert_close_weights(a, b):
    """Equal but for the order of float sums (gradients reduced across ranks, or accumulated in one)."""
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6, msg=k)


def gloo_threads(wait: float = 2.0) -> list[str]:
    """This process's gloo threads (its process group's workers and I/O loop) by name, after up to
    `wait` seconds for joined ones to leave /proc (Linux; elsewhere none are seen)."""
    deadline = time.time() + wait
    while True:
        names = []
        for comm in Path("/proc/self/task").glob("*/comm"):
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                names.append(comm.read_text().strip())
        names = [n for n in names if "gloo" in n]
        if not names or time.time() > deadline:
            return names
        time.sleep(0.05)


def torchrun(statement: str, *args) -> None:
    """Run `statement` (with `config` and `train` imported, `sys.argv[1:]` = args) in 2 gloo processes.

    Each process then checks that no gloo thread outlived its run: one left running into interpreter
    shutdown aborted the process now and then (see `cinegen.train.end_distributed`)."""
    script = (f"import sys; from tests.test_train import config, gloo_threads; from cinegen.train import train; "
              f"{statement}; threads = gloo_threads(); assert not threads, f'gloo threads outlived the run: {{threads}}'")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.getcwd())
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--rdzv-backend", "c10d",
           "--rdzv-endpoint", "localhost:0", "--no-python", sys.executable, "-c", script, *map(str, args)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[:3000] + "\n...\n" + proc.stderr[-2000:]


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("vae")
    train(config(out, steps=4))
    return out


def test_autoencoder_resume_is_exact(vae_run, tmp_path):
    split = tmp_path / "split"
    train(config(split, steps=4), max_steps=2)  # "killed" after step 2's checkpoint
    assert torch.load(split / CHECKPOINT, weights_only=False)["step"] == 2
    train(config(split, steps=4))
    assert_same_weights(weights(split), weights(vae_run))


def test_render_workers_change_nothing(vae_run, tmp_path):
    """Clips rendered ahead in worker processes give the same run as clips rendered in line."""
    train(config(tmp_path / "workers", steps=4, workers=2))
    assert_same_weights(weights(tmp_path / "workers"), weights(vae_run))


def test_latent_cache_is_the_same_with_render_workers(vae_run):
    from cinegen.data import make_buckets, make_source
    from cinegen.train import load_autoencoder

    cfg = config(vae_run)
    vae = load_autoencoder(str(vae_run), MODEL_PRESETS["test"].autoencoder).eval()
    source, buckets = make_source(cfg.data, 0), make_buckets(cfg.data, vae.config.time_factor)
    inline, ahead = (LatentCache.build(source, vae, buckets, 12, 0, 180, 1, encode_batch=4, workers=w) for w in (0, 2))
    assert inline.buckets == ahead.buckets
    for bucket in inline.buckets:
        for a, b in zip(inline.groups[bucket], ahead.groups[bucket], strict=True):
            torch.testing.assert_close(a, b)


def test_minutes_limit_ends_with_a_checkpoint(tmp_path):
    train(config(tmp_path / "run", steps=10_000, checkpoint_every=10_000), minutes=1e-6)
    state = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=False)
    assert state["step"] == 10  # the deadline is looked at every 10 steps


def test_minutes_limit_stops_every_torchrun_rank_together(tmp_path):
    torchrun("train(config(sys.argv[1], steps=10_000, checkpoint_every=10_000), minutes=1e-6)", tmp_path / "run")
    assert torch.load(tmp_path / "run" / CHECKPOINT, weights_only=False)["step"] == 10


def test_minutes_limit_covers_the_latent_cache_build(vae_run, tmp_path):
    """The denoiser's latent cache was built in full whatever `minutes` said, for longer than the
    whole budget if need be. Spent during the build, the run trains on the clips encoded so far,
    keeps them as its cache and ends as at any deadline; with fewer clips than a batch it is
    refused, and writes no cache."""
    out = tmp_path / "cut"
    train(config(out, stage="denoiser", steps=10_000, checkpoint_every=10_000, autoencoder_from=str(vae_run),
                 cache_clips=40), minutes=1e-6)
    cache = LatentCache.load(out / "latents.pt", 180, 1)
    assert 2 <= cache.clips <= 16  # one chunk of clips (at most 16) and no more
    assert torch.load(out / CHECKPOINT, weights_only=False)["step"] == 10
    assert '"event": "cache_cut"' in (out / "log.jsonl").read_text() and (out / "model" / "model.safetensors").is_file()
    short = tmp_path / "short"
    with pytest.raises(UserError, match=r"--minutes 1e-06 ran out while the latent cache was built, with \d+ of "
                                        r"its 40 clips encoded, fewer than a batch of 17; give more minutes"):
        train(config(short, stage="denoiser", batch_size=17, autoencoder_from=str(vae_run), cache_clips=40),
              minutes=1e-6)
    assert not (short / "latents.pt").exists() and not (short / CHECKPOINT).exists()


def test_fresh_run_starts_from_a_model_directory(vae_run, tmp_path):
    from cinegen.backends.native import NativeBackend

    dit_run = tmp_path / "dit"
    train(config(dit_run, stage="denoiser", steps=1, autoencoder_from=str(vae_run)))
    model_dir = dit_run / "model"
    shipped = NativeBackend.load(model_dir, torch.device("cpu"), text_encoder=False)
    for stage, module in (("autoencoder", shipped.vae), ("denoiser", shipped.dit)):
        run = tmp_path / stage
        train(config(run, stage=stage, steps=1, lr=0.0, autoencoder_from=str(vae_run), init_from=str(model_dir)))
        assert_same_weights(weights(run), module.state_dict())


def test_fine_tune_exports_the_sampling_defaults_of_the_model_it_started_from(vae_run, tmp_path):
    """Not the preset's: a fine-tune of the shipped model must render at the size and steps the
    shipped model does, or averaging it with that model silently changes the defaults."""
    from cinegen.backends.native import read_config

    start = tmp_path / "dit"
    train(config(start, stage="denoiser", steps=1, autoencoder_from=str(vae_run)))
    config_path = start / "model" / "config.json"
    model_config = json.loads(config_path.read_text())
    model_config["sampling"] |= {"width": 80, "height": 48, "steps": 7}
    config_path.write_text(json.dumps(model_config))
    tune = tmp_path / "tune"
    train(config(tune, stage="denoiser", steps=1, autoencoder_from=str(vae_run), init_from=str(start / "model")))
    assert read_config(tune / "model").sampling == read_config(start / "model").sampling
    assert read_config(tune / "model").sampling != MODEL_PRESETS["test"].sampling


def test_init_from_fewer_latent_channels_starts_as_that_model():
    """Widening to more latent channels preserves the function: the VAE reconstructs as before,
    the denoiser predicts the old channels as before whatever the new ones hold; a checkpoint
    of another architecture is refused."""
    torch.manual_seed(0)
    base = MODEL_PRESETS["test"]
    c = base.autoencoder.latent_channels
    wide_vae_cfg = dataclasses.replace(base.autoencoder, latent_channels=2 * c)
    narrow_vae, wide_vae = CausalVAE(base.autoencoder).eval(), CausalVAE(wide_vae_cfg).eval()
    narrow_vae.latent_std.fill_(2.0)
    assert load_init(wide_vae, narrow_vae.state_dict()) == [c, 2 * c]
    video = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(wide_vae.decode(wide_vae.encode(video)), narrow_vae.decode(narrow_vae.encode(video)))
        assert wide_vae.encode(video)[:, c:].abs().amax() > 0  # the new channels carry features to learn from

    narrow_dit = SpacetimeDiT(base.denoiser)
    for param in narrow_dit.parameters():  # trained-looking weights: the output layer is not zero
        param.data.normal_(0, 0.1)
    wide_dit = SpacetimeDiT(dataclasses.replace(base.denoiser, latent_channels=2 * c))
    assert load_init(wide_dit, narrow_dit.state_dict()) == [c, 2 * c]
    latent, t = torch.randn(1, 2 * c, 2, 4, 4), torch.full((1,), 0.5)
    text = (torch.randn(1, 3, base.denoiser.text_dim), torch.ones(1, 3, dtype=torch.bool))
    pooled, fps = torch.randn(1, base.denoiser.text_dim), torch.tensor([8.0])
    with torch.no_grad():
        wide = wide_dit(latent, t, *text, pooled, fps)
        torch.testing.assert_close(wide[:, :c], narrow_dit(latent[:, :c], t, *text, pooled, fps))
        assert wide[:, c:].abs().amax() == 0

    deeper = SpacetimeDiT(dataclasses.replace(base.denoiser, depth=base.denoiser.depth + 1))
    with pytest.raises(UserError, match="do not fit"):
        load_init(deeper, narrow_dit.state_dict())


def test_export_swaps_a_model_directorys_decoder_for_a_runs(vae_run, tmp_path):
    from cinegen.backends.native import NativeBackend
    from cinegen.train import export, load_autoencoder

    dit_run = tmp_path / "dit"
    train(config(dit_run, stage="denoiser", steps=1, autoencoder_from=str(vae_run)))
    decoder_run = tmp_path / "decoder"
    train(config(decoder_run, steps=2, freeze_encoder=True, temporal_weight=1.0, init_from=str(dit_run / "model")))
    export(dit_run / "model", tmp_path / "swapped", str(decoder_run))
    before = NativeBackend.load(dit_run / "model", torch.device("cpu"), text_encoder=False)
    after = NativeBackend.load(tmp_path / "swapped", torch.device("cpu"), text_encoder=False)
    assert_same_weights(after.dit.state_dict(), before.dit.state_dict())
    trained = load_autoencoder(str(decoder_run), MODEL_PRESETS["test"].autoencoder)
    for name, value in after.vae.decoder.state_dict().items():  # large tensors are fp16 in the file
        torch.testing.assert_close(value, trained.decoder.state_dict()[name], rtol=1e-3, atol=1e-3)
    first = "0.conv.weight"
    assert not torch.equal(after.vae.decoder.state_dict()[first], before.vae.decoder.state_dict()[first])
    assert after.config.sampling == before.config.sampling


def test_redrawn_latents_are_the_denoisers_edit_of_them(tiny_model_dir):
    """A low strength keeps the latent close, a full one draws it anew; the same seed, the same draw."""
    from cinegen.train import Redrawer

    latent = torch.randn(2, MODEL_PRESETS["test"].autoencoder.latent_channels, 2, 4, 4)
    ids, captions = torch.tensor([0, 1]), ["a red ball moves right", "a blue square rests"]

    def redrawn(strength: float, seed: int = 0) -> torch.Tensor:
        redrawer = Redrawer(str(tiny_model_dir), captions, (strength, strength), torch.device("cpu"))
        return redrawer(latent, ids, 8.0, torch.Generator().manual_seed(seed))

    low, full = redrawn(0.05), redrawn(1.0)
    assert low.shape == latent.shape and not torch.equal(low, latent)
    assert (low - latent).abs().mean() < 0.5 * (full - latent).abs().mean()
    torch.testing.assert_close(redrawn(0.05), low)
    assert not torch.equal(redrawn(0.05, seed=1), low)
    # With given ends, as extend and connect give their context, those frames come back as encoded
    # and the rest is redrawn.
    three = torch.randn(2, latent.shape[1], 3, 4, 4)
    for ends, kept in (("head", [0]), ("tail", [2]), ("both", [0, 2])):
        redrawer = Redrawer(str(tiny_model_dir), captions, (1.0, 1.0), torch.device("cpu"), context_share=1.0,
                            context_frames=1, context_ends=(ends,))
        out = redrawer(three, ids, 8.0, torch.Generator().manual_seed(0))
        torch.testing.assert_close(out[:, :, kept], three[:, :, kept], rtol=0, atol=0)
        assert (out[:, :, 1] - three[:, :, 1]).abs().mean() > 0.1
        assert redrawer.given_frames(3, torch.Generator().manual_seed(1)) == kept


def test_a_decoder_trains_on_redrawn_latents_with_the_encoder_kept(vae_run, tmp_path):
    from cinegen.train import load_autoencoder

    dit_run = tmp_path / "dit"
    train(config(dit_run, stage="denoiser", steps=1, autoencoder_from=str(vae_run)))
    run = tmp_path / "decoder"
    settings = dict(freeze_encoder=True, init_from=str(dit_run / "model"), denoised_share=1.0)
    train(config(run, steps=2, **settings))
    start = load_autoencoder(str(dit_run / "model"))
    trained = load_autoencoder(str(run), MODEL_PRESETS["test"].autoencoder)
    assert_same_weights(trained.encoder.state_dict(), start.encoder.state_dict())
    assert not torch.equal(trained.decoder.state_dict()["0.conv.weight"], start.decoder.state_dict()["0.conv.weight"])
    assert "nan" not in (run / "log.jsonl").read_text()
    # A run killed after step 2 and resumed draws the same redraws as one that never stopped.
    train(config(run, steps=3, **settings))
    whole = tmp_path / "whole"
    train(config(whole, steps=3, **settings))
    assert_same_weights(weights(run), weights(whole))


def test_denoiser_trains_samples_exports_and_generates(vae_run, tmp_path):
    heldout = tmp_path / "heldout.txt"
    heldout.write_text("a red ball moves right on a white background\n")
    out = tmp_path / "dit"
    cfg = config(out, stage="denoiser", steps=3, autoencoder_from=str(vae_run), sample_every=3, object_weight=2.0)
    cfg.data = dataclasses.replace(TINY_DATA, heldout=str(heldout))
    train(cfg)
    cache = LatentCache.load(out / "latents.pt", 180, 1)
    assert all(objects is not None and objects.any() for _, _, objects in cache.groups.values())
    log = (out / "log.jsonl").read_text()
    assert '"step": 3' in log and "nan" not in log
    assert '"samples": {"adherence"' in log and (out / "samples" / "000003" / "00.mp4").is_file()
    pipe = Pipeline.load(out / "model", device="cpu")
    video = pipe.run(GenerateRequest("a red ball", width=32, height=32, frames=5, steps=2)).frames
    assert video.shape == (5, 32, 32, 3)


def test_a_latent_cache_of_another_vae_is_encoded_again_or_refused(vae_run, tiny_model_dir, tmp_path):
    """latents.pt was reused whatever VAE autoencoder_from now named. It keeps the fingerprint of
    the encoder that made it: another VAE's cache is encoded again while nothing has trained on
    it, and refused once a checkpoint has; a cache saved before fingerprints is used as before."""
    import shutil

    from cinegen.data import encoder_fingerprint
    from cinegen.train import load_autoencoder

    test_vae = MODEL_PRESETS["test"].autoencoder
    trained, other = (load_autoencoder(str(s), test_vae) for s in (vae_run, tiny_model_dir))
    first = tmp_path / "first"
    train(config(first, stage="denoiser", steps=1, autoencoder_from=str(vae_run)))
    assert LatentCache.load(first / "latents.pt", 180, 1).fingerprint == encoder_fingerprint(trained)

    # A new run on a copied cache (as the shipped model's recipe in docs/default_model.md does), with another VAE.
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(first / "latents.pt", run / "latents.pt")
    train(config(run, stage="denoiser", steps=1, autoencoder_from=str(tiny_model_dir)))
    assert '"event": "cache_rebuilt"' in (run / "log.jsonl").read_text()
    rebuilt, copied = (LatentCache.load(r / "latents.pt", 180, 1) for r in (run, first))
    assert rebuilt.fingerprint == encoder_fingerprint(other) != copied.fingerprint
    assert rebuilt.clips == copied.clips and not torch.equal(*(c.groups[c.buckets[0]][0] for c in (rebuilt, copied)))

    before = (run / "latents.pt").read_bytes(), weights(run)
    with pytest.raises(UserError, match=r"latents.pt' holds latents of another VAE than autoencoder_from '.*vae.*' "
                                        r"\(encoder \w+, now \w+\), and '.*checkpoint.pt' has trained on them; give the "
                                        r"VAE this run started with \('.*model.*'\), or delete latents.pt"):
        train(config(run, stage="denoiser", steps=2, autoencoder_from=str(vae_run)))
    assert (run / "latents.pt").read_bytes() == before[0]
    assert_same_weights(weights(run), before[1])

    old = tmp_path / "old"  # a cache saved before fingerprints: the bare list of groups
    old.mkdir()
    torch.save([(b.__dict__, *group) for b, group in copied.groups.items()], old / "latents.pt")
    saved = (old / "latents.pt").read_bytes()
    train(config(old, stage="denoiser", steps=1, autoencoder_from=str(tiny_model_dir)))
    assert (old / "latents.pt").read_bytes() == saved and "cache_rebuilt" not in (old / "log.jsonl").read_text()

    # What the fingerprint holds: the encoder and the latent statistics, not the decoder.
    with torch.no_grad():
        next(trained.decoder.parameters()).add_(1.0)
        assert encoder_fingerprint(trained) == copied.fingerprint
        trained.latent_std.mul_(2.0)
        assert encoder_fingerprint(trained) != copied.fingerprint


def test_the_sharded_ema_is_gathered_once_per_step_that_needs_it(vae_run, tmp_path, monkeypatch):
    """Gathering a sharded EMA whole is a collective over every weight: the end of a denoiser
    run gathered it for its final checkpoint, then again for the export (and a step that
    sampled, again for its checkpoint). Counted here in one process, where `whole_model` is
    called as under FSDP; a finished run started again still gathers it for its export."""
    import cinegen.train

    calls, whole_model = [], cinegen.train.whole_model

    def counting(module, **kw):
        calls.append(kw)
        return whole_model(module, **kw)

    monkeypatch.setattr(cinegen.train, "whole_model", counting)
    out = tmp_path / "dit"
    cfg = config(out, stage="denoiser", steps=3, autoencoder_from=str(vae_run), sample_every=3)
    train(cfg)
    assert len(calls) == 2  # step 2's checkpoint; step 3's samples, checkpoint and export
    from safetensors.torch import load_file

    exported = {k.removeprefix("denoiser."): v for k, v in load_file(out / "model" / "model.safetensors").items()
                if k.startswith("denoiser.")}
    ema = torch.load(out / CHECKPOINT, weights_only=False)["ema"]
    for name, value in ema.items():  # the step-3 EMA, reused: large tensors are fp16 in the file
        torch.testing.assert_close(exported[name].float(), value.float(), rtol=1e-3, atol=1e-3, msg=name)
    calls.clear()
    (out / "model" / "model.safetensors").unlink()
    train(cfg)
    assert len(calls) == 1 and (out / "model" / "model.safetensors").is_file()


def resumes_exactly(script: str, tmp_path: Path) -> Path:
    """Runs `script` (4 steps, 2 processes) straight and split 2 + 2 by a restart; both must end on
    the same weights. Returns the straight run."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    torchrun(script, straight, 4)
    torchrun(script, split, 2)
    torchrun(script, split, 4)
    assert_same_weights(weights(split), weights(straight))
    return straight


def test_torchrun_two_processes_resume_exactly(vae_run, tmp_path):
    """DDP on gloo: a 2-process run split by a restart ends where the straight run ends."""
    straight = resumes_exactly("train(config(sys.argv[1], steps=4), max_steps=int(sys.argv[2]))", tmp_path)
    assert '"world_size": 2' in (straight / "log.jsonl").read_text()


@pytest.fixture(scope="module")
def accumulated_run(tmp_path_factory):
    """One process, accumulate 2: the clips 2 processes draw, in one step."""
    out = tmp_path_factory.mktemp("accumulated")
    train(config(out, steps=4, accumulate=2))
    return out


def test_two_processes_train_as_one_process_accumulating_two(accumulated_run, tmp_path):
    """One process with accumulate 2 draws the clips of 2 DDP processes and takes the same steps;
    only the order in which the gradients are summed differs."""
    torchrun("train(config(sys.argv[1], steps=4))", tmp_path / "two")
    assert_close_weights(weights(tmp_path / "two"), weights(accumulated_run))


def test_fsdp_resumes_exactly_and_trains_as_one_process_accumulating_two(accumulated_run, tmp_path):
    """FSDP2 on gloo: a 2-process run split by a restart ends where the straight run ends, and
    there as one process does with accumulate 2. Its checkpoint holds whole state dicts, as DDP's does."""
    straight = resumes_exactly(
        "train(config(sys.argv[1], steps=4, parallel='fsdp'), max_steps=int(sys.argv[2]))", tmp_path
    )
    assert '"parallel": "fsdp"' in (straight / "log.jsonl").read_text()
    sharded, single = (torch.load(run / CHECKPOINT, weights_only=False) for run in (straight, accumulated_run))
    assert_close_weights(sharded["model"], single["model"])
    assert_close_weights(sharded["ema"], single["ema"])
    assert sharded["optimizer"]["param_groups"] == single["optimizer"]["param_groups"]
    for i, moments in single["optimizer"]["state"].items():
        assert_close_weights(sharded["optimizer"]["state"][i], moments)


def test_a_checkpoint_resumes_under_the_other_parallel_and_in_one_process(accumulated_run, tmp_path):
    """Whole state dicts: a DDP run's checkpoint resumes under FSDP, and in one process that
    accumulates 2 (drawing the clips of both ranks), ending where the one-process run ends."""
    import shutil

    script = "train(config(sys.argv[1], steps=4, parallel=sys.argv[3]), max_steps=int(sys.argv[2]))"
    torchrun(script, tmp_path / "fsdp", 2, "ddp")
    shutil.copytree(tmp_path / "fsdp", tmp_path / "one")
    torchrun(script, tmp_path / "fsdp", 2, "fsdp")
    train(config(tmp_path / "one", steps=4, accumulate=2))
    assert_close_weights(weights(tmp_path / "fsdp"), weights(accumulated_run))
    assert_close_weights(weights(tmp_path / "one"), weights(accumulated_run))


def test_fsdp_denoiser_samples_and_exports_as_one_process(vae_run, tmp_path):
    """The sharded EMA is gathered on every rank for rank 0's samples and export (a gather on
    rank 0 alone would hang), and the denoiser trains as one process with accumulate 2 does."""
    heldout = tmp_path / "heldout.txt"
    heldout.write_text("a red ball moves right on a white background\n")
    settings = (f"stage='denoiser', steps=3, autoencoder_from={str(vae_run)!r}, sample_every=2, "
                f"data=dataclasses.replace(TINY_DATA, heldout={str(heldout)!r})")
    torchrun(f"import dataclasses; from tests.test_train import TINY_DATA; "
             f"train(config(sys.argv[1], {settings}, parallel='fsdp'))", tmp_path / "fsdp")
    train(config(tmp_path / "one", stage="denoiser", steps=3, autoencoder_from=str(vae_run), sample_every=2,
                 data=dataclasses.replace(TINY_DATA, heldout=str(heldout)), accumulate=2))
    assert (tmp_path / "fsdp" / "samples" / "000002" / "00.mp4").is_file()
    assert_close_weights(weights(tmp_path / "fsdp"), weights(tmp_path / "one"))
    from safetensors.torch import load_file

    assert_close_weights(*(load_file(run / "model" / "model.safetensors") for run in (tmp_path / "fsdp", tmp_path / "one")))


def test_folder_of_videos_trains(tmp_path):
    """`--data DIR`: a manifest of captioned videos instead of the world."""
    from cinegen.media import write_video

    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(0)
    with open(folder / "manifest.jsonl", "w") as f:
        for i in range(2):
            write_video(folder / f"{i}.mp4", rng.integers(0, 255, (12, 40, 56, 3), dtype=np.uint8), 12.0)
            f.write(json.dumps({"video": f"{i}.mp4", "caption": f"clip {i}"}) + "\n")
    cfg = config(tmp_path / "run", steps=2)
    cfg.data = dataclasses.replace(TINY_DATA, source=str(folder))
    train(cfg)
    assert torch.load(tmp_path / "run" / CHECKPOINT, weights_only=False)["step"] == 2


@pytest.mark.parametrize(("manifest", "message"), [
    (b'{"video": "gone.mp4", "caption": "x"}\n', r"manifest.jsonl:1: video '.*gone.mp4' does not exist"),
    (b'\n{"video": "a.mp4", "caption": 5}\n', r"manifest.jsonl:2: caption 5 is not a string"),
    (b'{"video": ".", "caption": "x"}\n', r"manifest.jsonl:1: video '.*' is not a file"),
    (b"\xff\xfe not text", r"manifest.jsonl is not UTF-8 text"),
    (b"\n", r"manifest.jsonl lists no videos"),
])
def test_a_bad_manifest_is_refused_when_read(tmp_path, manifest, message):
    """A missing video failed only when a batch first drew it, a caption 5 trained as "5", and a
    manifest that is not UTF-8 gave a traceback."""
    from cinegen.data import FolderSource

    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "manifest.jsonl").write_bytes(manifest)
    with pytest.raises(UserError, match=message):
        FolderSource(tmp_path)
    with pytest.raises(UserError, match="data folder '.*nowhere' does not exist"):
        FolderSource(tmp_path / "nowhere")


@pytest.mark.parametrize(("bad", "message"), [
    ("empty.mp4", r"input file '.*empty.mp4' is empty"),
    ("junk.mp4", r"'.*junk.mp4' is not a readable video \(InvalidDataError: Invalid data found"),
    ("cut.mp4", r"'.*cut.mp4' has no video stream"),  # a real mp4's first 200 bytes
    ("huge.png", r"'.*huge.png' is 2000x2000; at most 3686400 pixels allowed"),
])
def test_an_unreadable_video_is_refused_before_any_work(tmp_path, bad, message):
    """A corrupt or oversized video failed only when a batch first drew it, maybe hours into the
    run; now its container's headers are read (not its frames) before anything is written."""
    from PIL import Image

    from cinegen.media import write_video

    folder = tmp_path / "data"
    folder.mkdir()
    write_video(folder / "good.mp4", np.zeros((12, 40, 56, 3), dtype=np.uint8), 12.0)
    contents = {"empty.mp4": b"", "junk.mp4": b"not a video " * 10,
                "cut.mp4": (folder / "good.mp4").read_bytes()[:200]}
    if bad in contents:
        (folder / bad).write_bytes(contents[bad])
    else:
        Image.fromarray(np.zeros((2000, 2000, 3), dtype=np.uint8)).save(folder / bad)
    (folder / "manifest.jsonl").write_text(
        "".join(json.dumps({"video": v, "caption": "a clip"}) + "\n" for v in ("good.mp4", bad)))
    cfg = config(tmp_path / "run", steps=2, data=dataclasses.replace(TINY_DATA, source=str(folder)))
    with pytest.raises(UserError, match="manifest.jsonl:2: " + message) as error:
        train(cfg)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("stage", STAGES)
def test_a_video_damaged_partway_stops_the_run_naming_its_manifest_line(tmp_path, tiny_model_dir, stage):
    """An mp4 cut short has a sound header, so it passes the manifest's check and is decoded only
    when a batch (autoencoder) or the latent cache build (denoiser) draws it. In a render worker,
    DataLoader raised it again with the worker's traceback as its message, which the CLI printed;
    nor did it say where the file was damaged."""
    from cinegen.media import write_video

    folder = tmp_path / "data"
    folder.mkdir()
    write_video(folder / "good.mp4", np.zeros((12, 40, 56, 3), dtype=np.uint8), 12.0)
    write_video(folder / "cut.mp4", np.random.default_rng(0).integers(0, 255, (24, 40, 56, 3), dtype=np.uint8), 12.0)
    data = (folder / "cut.mp4").read_bytes()
    (folder / "cut.mp4").write_bytes(data[: len(data) * 6 // 10])
    (folder / "manifest.jsonl").write_text(
        "".join(json.dumps({"video": v, "caption": "a clip"}) + "\n" for v in ("good.mp4", "cut.mp4")))
    denoiser = {"autoencoder_from": str(tiny_model_dir), "sample_every": 0} if stage == "denoiser" else {}
    cfg = config(tmp_path / "run", stage=stage, steps=2, workers=1, data=dataclasses.replace(TINY_DATA, source=str(folder)),
                 **denoiser)
    with pytest.raises(UserError, match=r"manifest.jsonl:2: '.*cut.mp4' is damaged at frame \d+ of the 24 its header "
                                        r"declares: it does not decode .*; repair the video or remove its line") as error:
        train(cfg)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run" / "latents.pt").exists()


def test_object_masks_cover_the_objects_and_weight_the_loss():
    from cinegen.data import video_batch
    from cinegen.train import autoencoder_loss

    source = WorldSource(TINY_DATA, seed=0)
    batch = video_batch(source, make_buckets(TINY_DATA, 4), 4, 3, np.random.default_rng(0), objects=True)
    assert batch.objects is not None and batch.objects.shape[1] == 1
    assert batch.objects.shape[2:] == batch.video.shape[2:]
    assert 0 < batch.objects.mean() < 0.5  # some pixels are objects, most are background

    class Shift(torch.nn.Module):  # a "VAE" whose reconstruction is off by 0.1 on object pixels only
        def forward(self, video, generator, latent_noise=0.0, redraw=None):
            from cinegen.models.autoencoder import LatentDistribution

            zero = torch.zeros(1)
            return video + 0.1 * batch.objects, LatentDistribution(zero, zero)

    g = torch.Generator()
    plain, _ = autoencoder_loss(Shift(), batch.video, 0.0, g)
    weighted, _ = autoencoder_loss(Shift(), batch.video, 0.0, g, batch.objects, object_weight=4.0)
    assert weighted > 2 * plain


def test_object_margin_weighs_errors_that_many_pixels_around_an_object():
    from cinegen.models.autoencoder import LatentDistribution
    from cinegen.train import autoencoder_loss

    video = torch.zeros(1, 3, 2, 16, 16)
    objects = torch.zeros(1, 1, 2, 16, 16)
    objects[..., 6:10, 6:10] = 1.0  # a still square; the reconstruction rings 3 px outside it
    ring = torch.zeros_like(objects)
    ring[..., 3:13, 3:13] = 1.0
    ring[..., 4:12, 4:12] = 0.0

    class Ringing(torch.nn.Module):
        def forward(self, video, generator, latent_noise=0.0, redraw=None):
            zero = torch.zeros(1)
            return video + 0.1 * ring, LatentDistribution(zero, zero)

    g = torch.Generator()
    # Inside the weighted mask from a margin of 3 px on; (weights are normalised to mean 1, so
    # a smaller mask that leaves the ring out weighs it a little less than 1).
    loss = {m: autoencoder_loss(Ringing(), video, 0.0, g, objects, object_weight=8.0, object_margin=m)[0]
            for m in (1, 2, 3)}
    assert loss[1] > loss[2] and loss[3] > 2 * loss[1]


def test_latent_cells_follow_the_causal_frame_groups():
    from cinegen.data import latent_cells

    pixels = torch.zeros(1, 9, 16, 16, dtype=torch.bool)
    pixels[0, 0, 0, 0] = True  # frame 0 -> latent frame 0, cell (0, 0)
    pixels[0, 6, 9, 15] = True  # frame 6 is in frames 5..8 -> latent frame 2, cell (1, 1)
    cells = latent_cells(pixels, 4, 8)
    assert cells.shape == (1, 1, 3, 2, 2)
    assert cells.nonzero().tolist() == [[0, 0, 0, 0, 0], [0, 0, 2, 1, 1]]


def test_temporal_weight_penalises_a_flickering_reconstruction():
    from cinegen.models.autoencoder import LatentDistribution
    from cinegen.train import autoencoder_loss

    class Offset(torch.nn.Module):  # a "VAE" whose reconstruction is off by a fixed error per frame
        def __init__(self, per_frame):
            super().__init__()
            self.per_frame = per_frame

        def forward(self, video, generator, latent_noise=0.0, redraw=None):
            zero = torch.zeros(1)
            return video + self.per_frame.view(1, 1, -1, 1, 1), LatentDistribution(zero, zero)

    video = torch.zeros(1, 3, 5, 8, 8)  # a still clip
    steady = Offset(torch.full((5,), 0.1))  # every frame 0.1 too bright: no flicker
    flicker = Offset(torch.tensor([0.1, -0.1, 0.1, -0.1, 0.1]))  # the same error size, alternating
    g = torch.Generator()
    plain = autoencoder_loss(steady, video, 0.0, g)[0]
    assert plain == pytest.approx(autoencoder_loss(flicker, video, 0.0, g)[0])
    steady_loss = autoencoder_loss(steady, video, 0.0, g, temporal_weight=1.0)[0]
    flicker_loss = autoencoder_loss(flicker, video, 0.0, g, temporal_weight=1.0)[0]
    assert flicker_loss == pytest.approx(steady_loss + 0.2)  # mean |error change| between frames
    image = autoencoder_loss(steady, video[:, :, :1], 0.0, g, temporal_weight=1.0)[0]
    assert torch.isfinite(image)


def test_edge_weight_penalises_a_blurred_edge_more_than_a_shifted_level():
    from cinegen.models.autoencoder import LatentDistribution
    from cinegen.train import autoencoder_loss

    class Fixed(torch.nn.Module):  # a "VAE" that always returns the same reconstruction
        def __init__(self, recon):
            super().__init__()
            self.recon = recon

        def forward(self, video, generator, latent_noise=0.0, redraw=None):
            zero = torch.zeros(1)
            return self.recon, LatentDistribution(zero, zero)

    video = torch.zeros(1, 3, 1, 8, 8)
    video[..., 4:] = 1.0  # a sharp vertical edge
    blurred = video.clone()
    blurred[..., 3], blurred[..., 4] = 0.25, 0.75  # the edge spread over two columns
    brighter = video + 0.0625  # every pixel off by the same total L1 as the blur, edge intact
    g = torch.Generator()
    assert autoencoder_loss(Fixed(blurred), video, 0.0, g)[1]["l1"] == pytest.approx(
        autoencoder_loss(Fixed(brighter), video, 0.0, g)[1]["l1"]
    )
    blur_gain = (autoencoder_loss(Fixed(blurred), video, 0.0, g, edge_weight=1.0)[0]
                 - autoencoder_loss(Fixed(blurred), video, 0.0, g)[0])
    level_gain = (autoencoder_loss(Fixed(brighter), video, 0.0, g, edge_weight=1.0)[0]
                  - autoencoder_loss(Fixed(brighter), video, 0.0, g)[0])
    assert level_gain == pytest.approx(0.0, abs=1e-7)  # a uniform offset has no gradient error
    # error along width per row: 0, 0, 0, .25, -.25, 0, 0, 0 -> diffs .25, .5, .25 over 7 places
    assert blur_gain == pytest.approx(1.0 / 7)


@pytest.mark.parametrize("frames", [1, 5])
def test_weighted_autoencoder_loss_takes_images_and_clips(frames):
    from cinegen.models.autoencoder import LatentDistribution
    from cinegen.train import autoencoder_loss

    class Dim(torch.nn.Module):
        def forward(self, video, generator, latent_noise=0.0, redraw=None):
            zero = torch.zeros(1)
            return 0.9 * video, LatentDistribution(zero, zero)

    video = torch.rand(2, 3, frames, 8, 8) * 2 - 1
    loss, stats = autoencoder_loss(Dim(), video, 0.0, torch.Generator(), None, object_weight=4.0)
    assert torch.isfinite(loss) and stats["psnr"] > 20


def test_cooldown_lets_the_learning_rate_fall_to_zero_at_the_end(tmp_path):
    train(config(tmp_path, steps=4, cooldown=0.5))
    lrs = [r["lr"] for r in map(json.loads, (tmp_path / "log.jsonl").read_text().splitlines()) if "lr" in r]
    # Share of the run left before each step: 1, 3/4, 1/2, 1/4; the last half falls linearly.
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-3, 0.5e-3])
    assert learning_rate(config(tmp_path, cooldown=0.5), step=10, run_left=0.0) == 0.0
    assert learning_rate(config(tmp_path), step=10, run_left=0.0) == 1e-3  # no cooldown: constant


class RecordingDenoiser(torch.nn.Module):
    """Stands in for the DiT in `denoiser_loss`: records the per-token t it is given."""

    config = dataclasses.make_dataclass("Config", [("patch_size", int, 2)])()

    def forward(self, x_t, t_tokens, *_):
        self.t_tokens = t_tokens
        return torch.zeros_like(x_t)


def test_context_noise_gives_known_tokens_a_small_t_in_half_the_clips(tmp_path):
    x0 = torch.randn(64, 4, 3, 4, 4)
    text = TextEmbedding(torch.zeros(64, 2, 8), torch.ones(64, 2, dtype=torch.bool), torch.zeros(64, 8))
    seen = {}
    for level in (0.0, 0.3):
        dit = RecordingDenoiser()
        denoiser_loss(dit, x0, text, torch.full((64,), 8.0), config(tmp_path, "denoiser", canvas_share=1.0,
                      context_noise=level), torch.Generator().manual_seed(0))
        seen[level] = dit.t_tokens
    known = seen[0.0] == 0  # the same masks and noise either way: context noise draws last
    noisy = seen[0.3][known]
    assert known.any() and (noisy <= 0.3).all() and (noisy > 0).any() and (noisy == 0).any()
    torch.testing.assert_close(seen[0.3][~known], seen[0.0][~known])


CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads_and_has_buckets(path):
    cfg = TrainConfig.load(path)
    assert cfg.stage in STAGES and cfg.model in MODEL_PRESETS
    buckets = make_buckets(cfg.data, MODEL_PRESETS[cfg.model].autoencoder.time_factor)
    assert {b.latent_frames for b in buckets} == set(cfg.data.latent_frames)  # every length fits max_seconds


def test_a_config_with_a_base_overrides_only_what_it_states(tmp_path):
    (tmp_path / "base.toml").write_text('stage = "denoiser"\nlr = 2e-4\nseed = 3\n'
                                        "[data]\nfps = [8.0]\nmax_objects = 2\n")
    (tmp_path / "next.toml").write_text('base = "base.toml"\nseed = 4\n[data]\nmax_objects = 1\n')
    cfg = TrainConfig.load(tmp_path / "next.toml")
    assert (cfg.stage, cfg.lr, cfg.seed) == ("denoiser", 2e-4, 4)
    assert (cfg.data.fps, cfg.data.max_objects) == ((8.0,), 1)  # tables merge key by key


@pytest.mark.parametrize(("text", "message"), [
    ('base = "loop.toml"\n', "is its own base"),
    ('base = "missing.toml"\n', "does not exist"),
    ("base = 3\n", "base must be a file name"),
    ("lr = \n", "does not parse"),
    ('steps = "ten"\n', "'steps' must be an integer such as 4000, got 'ten'"),
    ("freeze_encoder = 1\n", "'freeze_encoder' must be true or false, got 1"),
    ("[data]\nsizes = [32, 32]\n", r"'sizes' must be a list such as \[\[96, 96\]"),
    ('data = "clips"\n', "'data' must be a table"),
])
def test_bad_configs_and_bases_are_one_line_errors(tmp_path, text, message):
    (tmp_path / "loop.toml").write_text(text)  # named so that its first case is its own base
    with pytest.raises(UserError, match=message):
        TrainConfig.load(tmp_path / "loop.toml")


def test_buckets_leave_out_clips_longer_than_max_seconds():
    data = dataclasses.replace(TINY_DATA, latent_frames=(1, 5), fps=(8.0,), max_seconds=1.0)
    assert {b.latent_frames for b in make_buckets(data, 4)} == {1}  # 17 frames at 8 fps = 2.1 s
    with pytest.raises(UserError, match="max_seconds = 0.05"):
        make_buckets(dataclasses.replace(data, max_seconds=0.05), 4)


@pytest.mark.parametrize("field", ["heldout", "heldout_events"])
def test_heldout_scenes_never_enter_the_caption_pool(tmp_path, field):
    data = dataclasses.replace(TINY_DATA, caption_pool=50, events=True, wall=True, heldout_events="")
    pool = WorldSource(data, seed=0)
    listed = tmp_path / "heldout.txt"
    listed.write_text(pool.captions[0] + "\n")
    without = WorldSource(dataclasses.replace(data, **{field: str(listed)}), seed=0)
    assert pool.scenes[0] not in without.scenes and len(without.scenes) == 50


def test_average_models_writes_the_weighted_mean_and_refuses_a_bad_share(tiny_model_dir, tmp_path):
    from cinegen.backends.native import NativeBackend

    cpu = torch.device("cpu")
    first = NativeBackend.load(tiny_model_dir, cpu, text_encoder=False)
    torch.manual_seed(1)
    other = SpacetimeDiT(first.config.denoiser)
    NativeBackend.save(tmp_path / "other", first.config, first.vae, other)
    script = Path(__file__).parents[1] / "scripts" / "average_models.py"
    run = [sys.executable, str(script), str(tiny_model_dir), str(tmp_path / "other")]
    subprocess.run(run + [str(tmp_path / "soup"), "--weight", "0.25"], check=True, capture_output=True)
    soup = NativeBackend.load(tmp_path / "soup", cpu, text_encoder=False)
    second = NativeBackend.load(tmp_path / "other", cpu, text_encoder=False)
    for name, value in soup.dit.state_dict().items():  # large tensors are fp16 in the file
        want = 0.75 * first.dit.state_dict()[name] + 0.25 * second.dit.state_dict()[name]
        torch.testing.assert_close(value, want, rtol=1e-3, atol=1e-3)
    assert_same_weights(soup.vae.state_dict(), first.vae.state_dict())
    bad = subprocess.run(run + [str(tmp_path / "bad"), "--weight", "1.5"], capture_output=True, text=True)
    assert bad.returncode != 0 and "--weight 1.5" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_train_only_trains_the_gate_alone_and_exports_it(vae_run, tmp_path):
    from cinegen.backends.native import NativeBackend
    from cinegen.train import export

    dit_run = tmp_path / "dit"
    train(config(dit_run, stage="denoiser", steps=1, autoencoder_from=str(vae_run)))
    part_run = tmp_path / "parts"
    train(config(part_run, model="test-gated", steps=2, lr=0.05, train_only=("gate",), object_weight=4.0,
                 temporal_weight=1.0, edge_weight=1.0, latent_noise=0.2, init_from=str(dit_run / "model"),
                 data=dataclasses.replace(TINY_DATA, latent_frames=(2,))))
    before = NativeBackend.load(dit_run / "model", torch.device("cpu"), text_encoder=False).vae
    trained = weights(part_run)
    for name, value in before.state_dict().items():  # encoder, decoder and latent statistics as they were
        torch.testing.assert_close(trained[name], value, rtol=1e-3, atol=1e-3, msg=name)
    preset = MODEL_PRESETS["test-gated"].autoencoder
    torch.manual_seed(0)  # the same init as the run's model: train() seeds with cfg.seed = 0
    fresh = CausalVAE(preset).state_dict()
    gate = [name for name in trained if name.startswith("gate.")]
    assert gate and not all(torch.equal(trained[name], fresh[name]) for name in gate)  # it learned

    export(dit_run / "model", tmp_path / "exported", str(part_run))
    after = NativeBackend.load(tmp_path / "exported", torch.device("cpu"), text_encoder=False)
    assert after.config.autoencoder == preset
    latent = torch.randn(1, 4, 3, 4, 4)
    with torch.no_grad():
        plain, changed = before.decode(latent), after.vae.decode(latent)
    torch.testing.assert_close(changed[:, :, 0], plain[:, :, 0], rtol=1e-3, atol=1e-3)  # frame 0 passes as it is
    assert not torch.allclose(changed, plain, atol=1e-3)


@pytest.mark.parametrize(("settings", "message"), [
    ({"train_only": ("gate",)}, "train_only 'gate' needs stage 'autoencoder' and a model with a gate"),
    ({"train_only": ("gate",), "model": "test", "stage": "autoencoder"}, "'test' in stage 'autoencoder' has none"),
    ({"train_only": ("decoder",)}, "train_only part 'decoder' is not one of gate"),
    ({"train_only": ("gate",), "model": "test-gated"}, "latent_frames must all be >= 2"),
])
def test_train_only_needs_a_model_with_those_parts(tmp_path, settings, message):
    with pytest.raises(UserError, match=re.escape(message)):
        train(config(tmp_path / "a", steps=1, **settings))
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize(("setting", "message"), [
    ({"log_every": 0}, "log_every 0 must be at least 1"),
    ({"checkpoint_every": 0}, "checkpoint_every 0 must be at least 1"),
    ({"batch_size": 0}, "batch_size 0 must be at least 1"),
    ({"accumulate": 0}, "accumulate 0 must be at least 1"),
    ({"parallel": "zero3"}, "parallel 'zero3' is not one of ddp, fsdp"),
    ({"steps": 0}, "steps 0 must be at least 1"),
    ({"precision": "fp8"}, "precision 'fp8' is not one of auto, fp32, bf16, fp16"),
    ({"lr": -1.0}, "lr -1.0 must be 0 or more"),
    ({"workers": -1}, "workers -1 must be 0 or more"),
    ({"ema": 2.0}, "ema 2.0 is not a share between 0 and 1"),
    ({"data": dataclasses.replace(TINY_DATA, sizes=((30, 30),))}, r"data size \[30, 30\] is not \[width, height\] in multiples of 8 px"),
    ({"data": dataclasses.replace(TINY_DATA, sizes=((40, 32),)), "stage": "denoiser", "autoencoder_from": "x"},
     r"data size \[40, 32\] is not \[width, height\] in multiples of 16 px"),  # 5 latent cells: no whole patches
    ({"data": dataclasses.replace(TINY_DATA, fps=(0.0,))}, r"data fps \[0.0\] must be frame rates above 0"),
    ({"data": dataclasses.replace(TINY_DATA, caption_pool=0)}, "data caption_pool 0 must be at least 1"),
    ({"denoised_share": 1.5}, "denoised_share 1.5 is not a share between 0 and 1"),
    ({"denoised_context_share": -0.5}, "denoised_context_share -0.5 is not a share between 0 and 1"),
    ({"denoised_context_share": 0.5, "denoised_context_frames": 0}, "denoised_context_frames 0 must be at least 1"),
    ({"denoised_context_share": 0.5, "denoised_context_ends": ("middle",)},
     r"denoised_context_ends \['middle'\] must be a non-empty list of 'head', 'tail' and 'both'"),
    ({"denoised_share": 0.5}, "denoised_share needs stage 'autoencoder' with freeze_encoder = true"),
    ({"denoised_share": 0.5, "freeze_encoder": True, "init_from": "runs/none"},
     "init_from 'runs/none' is not one"),
])
def test_settings_no_run_can_use_are_refused_before_any_work(tmp_path, setting, message):
    """They failed mid-run with a traceback (`step % 0`, an empty batch) or, as `steps = 0`, ran nothing."""
    with pytest.raises(UserError, match=message):
        train(config(tmp_path / "run", **setting))
    with pytest.raises(UserError, match="max_steps -3 must be at least 1"):
        train(config(tmp_path / "run"), max_steps=-3)
    assert not (tmp_path / "run").exists()


def test_a_run_folder_of_another_stage_or_model_is_refused_before_any_work(vae_run):
    """Resuming loaded the checkpoint into the other network: a traceback of missing keys, after
    the denoiser stage had written its latent cache into the autoencoder's run folder."""
    with pytest.raises(UserError, match="holds the autoencoder of model 'test', and this run trains the denoiser"):
        train(config(vae_run, stage="denoiser", autoencoder_from=str(vae_run)))
    with pytest.raises(UserError, match="trains the autoencoder of 'test-gated'; give it another out_dir"):
        train(config(vae_run, model="test-gated"))
    assert not (vae_run / "latents.pt").exists()


def test_export_refusals_are_one_line_errors_that_write_nothing(vae_run, tmp_path, capsys):
    """A run folder without a checkpoint, an autoencoder run, neither --run nor --config, a target
    that cannot be a folder, and training options --export would ignore: tracebacks or silence before."""
    from cinegen.cli import main

    (tmp_path / "file").write_text("")
    out = str(tmp_path / "model")
    cases = [
        (["--export", out, "--run", str(tmp_path / "nothing")], "neither a run folder with checkpoint.pt"),
        (["--export", out, "--run", str(vae_run)], "is an autoencoder run; export a denoiser run"),
        (["--export", out], "--export needs the run"),
        (["--export", out, "--run", str(vae_run), "--steps", "5", "--data", "clips"], "leave out --data, --steps"),
        (["--config", "configs/tiny.toml", "--run", str(vae_run)], "only go with --export"),
    ]
    for args, message in cases:
        assert main(["train", *args]) == 2, args
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("cinegen: error:"), lines
        assert re.search(message, lines[0]), lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_export_writes_the_run_named_by_out_dir_and_refuses_an_unwritable_target(vae_run, tmp_path, capsys):
    """`--config C --out-dir R --export M` exported the config's out_dir, not R, the run trained with --out-dir R."""
    from cinegen.cli import main

    dit_run = tmp_path / "dit"
    train(config(dit_run, stage="denoiser", steps=1, autoencoder_from=str(vae_run)))
    cfg_path = tmp_path / "run.json"
    cfg_path.write_text(json.dumps({"stage": "denoiser", "out_dir": str(tmp_path / "elsewhere")}))
    assert main(["train", "--config", str(cfg_path), "--out-dir", str(dit_run), "--export", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / "model.safetensors").is_file() and not (tmp_path / "elsewhere").exists()
    (tmp_path / "file").write_text("")
    assert main(["train", "--run", str(dit_run), "--export", str(tmp_path / "file")]) == 2
    assert "cannot write the model directory" in capsys.readouterr().err
    assert main(["train", "--run", str(dit_run), "--autoencoder", str(tmp_path / "no"), "--export", str(tmp_path / "x")]) == 2
    assert "--autoencoder '" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_a_vae_that_does_not_fit_the_denoiser_is_refused_before_the_latent_cache(vae_run, tiny_model_dir, tmp_path):
    """A 4-channel VAE under an 8-channel DiT encoded the whole cache, wrote it, then failed in the
    first step with a traceback; the next run read that cache again."""
    for source in (vae_run, tiny_model_dir):  # an autoencoder checkpoint, a model directory
        with pytest.raises(UserError, match="is a VAE of 4 latent channels.*; this model needs one of 8 latent"):
            train(config(tmp_path / "run", stage="denoiser", model="tiny", autoencoder_from=str(source)))
        assert not (tmp_path / "run" / "latents.pt").exists()
    with pytest.raises(UserError, match="does not fit this model's VAE: Missing key"):
        train(config(tmp_path / "run", stage="denoiser", model="test-gated", autoencoder_from=str(vae_run)))
