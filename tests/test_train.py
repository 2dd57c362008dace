import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from cinegen.config import DataConfig, TrainConfig
from cinegen.pipeline import GenerateRequest, Pipeline
from cinegen.train import CHECKPOINT, train

TINY_DATA = DataConfig(sizes=((32, 32), (48, 32)), latent_frames=(1, 2), fps=(8.0,), caption_pool=12, heldout="")


def config(out_dir, stage="autoencoder", steps=3, **kw) -> TrainConfig:
    return TrainConfig(stage=stage, model="test", steps=steps, batch_size=2, lr=1e-3, warmup=1,
                       checkpoint_every=2, log_every=1, out_dir=str(out_dir), data=TINY_DATA, cache_clips=8, **kw)


def weights(run_dir):
    return torch.load(run_dir / CHECKPOINT, weights_only=False)["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)


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


def test_denoiser_trains_samples_exports_and_generates(vae_run, tmp_path):
    heldout = tmp_path / "heldout.txt"
    heldout.write_text("a red ball moves right on a white background\n")
    out = tmp_path / "dit"
    cfg = config(out, stage="denoiser", steps=3, autoencoder_from=str(vae_run), sample_every=3)
    cfg.data = dataclasses.replace(TINY_DATA, heldout=str(heldout))
    train(cfg)
    log = (out / "log.jsonl").read_text()
    assert '"step": 3' in log and "nan" not in log
    assert '"samples": {"adherence"' in log and (out / "samples" / "000003" / "00.mp4").is_file()
    pipe = Pipeline.load(out / "model", device="cpu")
    video = pipe.run(GenerateRequest("a red ball", width=32, height=32, frames=5, steps=2)).frames
    assert video.shape == (5, 32, 32, 3)


def test_torchrun_two_processes_resume_exactly(vae_run, tmp_path):
    """DDP on gloo: a 2-process run split by a restart ends where the straight run ends."""
    script = (
        "import sys; from tests.test_train import config; from cinegen.train import train; "
        "train(config(sys.argv[1], steps=4), max_steps=int(sys.argv[2]))"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.getcwd())

    def torchrun(out, max_steps):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--rdzv-backend", "c10d",
               "--rdzv-endpoint", "localhost:0", "--no-python", sys.executable, "-c", script, str(out), str(max_steps)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]

    straight, split = tmp_path / "straight", tmp_path / "split"
    torchrun(straight, 4)
    torchrun(split, 2)
    torchrun(split, 4)
    assert '"world_size": 2' in (straight / "log.jsonl").read_text()
    assert_same_weights(weights(split), weights(straight))


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
