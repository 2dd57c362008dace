import copy
import os

import pytest
import torch

# Tests share 2 CPU cores with each other's subprocesses; one thread each keeps them predictable.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A randomly initialised model of the `test` preset, saved as a model directory."""
    from cinegen.backends.native import NativeBackend
    from cinegen.config import MODEL_PRESETS
    from cinegen.models.autoencoder import CausalVAE
    from cinegen.models.transformer import SpacetimeDiT

    torch.manual_seed(0)
    cfg = copy.deepcopy(MODEL_PRESETS["test"])
    cfg.sampling.steps = 3
    cfg.sampling.width = cfg.sampling.height = 32
    dit = SpacetimeDiT(cfg.denoiser)
    # Non-zero output layers so the untrained model's velocity depends on its inputs.
    for m in (dit.final, dit.final_modulation[1], dit.modulation[1]):
        torch.nn.init.normal_(m.weight, std=0.02)
    path = tmp_path_factory.mktemp("model")
    NativeBackend.save(path, cfg, CausalVAE(cfg.autoencoder), dit)
    return path
