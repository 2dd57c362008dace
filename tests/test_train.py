import os
import subprocess
import sys

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


def test_denoiser_trains_exports_and_generates(vae_run, tmp_path):
    out = tmp_path / "dit"
    train(config(out, stage="denoiser", steps=3, autoencoder_from=str(vae_run)))
    log = (out / "log.jsonl").read_text()
    assert '"step": 3' in log and "nan" not in log
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
