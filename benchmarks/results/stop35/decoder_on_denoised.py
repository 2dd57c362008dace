"""Fine-tune the decoder (and gate) of a model directory on the denoiser's own latents: stop 35's
first try of the recipe, before `cinegen train` had it as `denoised_share`. Kept for its learning
curve (`validation_curve_prototype.jsonl`).

Stop 34 found that a decoder fine-tuned on the encoder's latents decodes world clips better but
the denoiser's latents worse. Here the decoder learns from latents the denoiser made: each batch
of rendered world clips is encoded (encoder frozen), noised to a level s and denoised back with
the shipped denoiser and its caption, as an SDEdit from s would (guided, the default step
density); the decoder is trained to draw the rendered clip from that. At small s the content is
the clip's, and what differs is how the denoiser draws: its jitter in still cells and its edges.
A share of batches decode the encoder's latent as before, so round trips are kept.

    python benchmarks/results/stop35/decoder_on_denoised.py configs/cpu-vae-long-decoder.toml runs/dod 50

Writes `OUT/checkpoint.pt` (an autoencoder checkpoint: `load_autoencoder`, `--autoencoder` of
`cinegen train --export`) every 50 steps and at the end, and one JSON line a log step.
"""
import copy
import json
import math
import sys
import time
from pathlib import Path

import torch

from cinegen.canvas import Canvas
from cinegen.config import TrainConfig
from cinegen.data import batch_rng, make_buckets, make_source, video_batch
from cinegen.pipeline import Pipeline
from cinegen.sampling import Guidance, sample
from cinegen.train import reconstruction_loss

STRENGTHS = (0.2, 0.6)  # the noise levels the latents are denoised from, drawn uniformly
CLEAN_SHARE = 0.25  # batches that decode the encoder's latent itself


def main() -> None:
    config, out, minutes = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
    cfg = TrainConfig.load(config)
    torch.set_num_threads(cfg.threads or 1)
    pipe = Pipeline.load(cfg.init_from, device="cpu")
    backend, d = pipe.backend, pipe.defaults
    vae = copy.deepcopy(backend.vae).train()
    vae.encoder.requires_grad_(False)
    ema = copy.deepcopy(vae).eval().requires_grad_(False)
    tf = vae.config.time_factor
    source = make_source(cfg.data, cfg.seed)
    buckets = make_buckets(cfg.data, tf)
    params = [p for p in vae.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    out.mkdir(parents=True, exist_ok=True)
    deadline, step, started = time.time() + 60 * minutes, 0, time.time()

    def save() -> None:
        state = {"config": {"stage": "autoencoder", "model": cfg.model}, "ema": ema.state_dict(), "step": step}
        torch.save(state, out / "checkpoint.tmp")
        (out / "checkpoint.tmp").replace(out / "checkpoint.pt")

    while time.time() < deadline:
        rng = batch_rng(cfg.seed, 0, step)
        batch = video_batch(source, buckets, tf, cfg.batch_size, rng, objects=cfg.object_weight > 0)
        generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        with torch.no_grad():
            z = vae.encode(batch.video)
            strength = 0.0
            if rng.random() >= CLEAN_SHARE:
                strength = float(rng.uniform(*STRENGTHS))
                prompts = [source.captions[int(i)] for i in batch.caption_ids]
                cond = backend.encode_text(prompts, batch.fps)
                uncond = backend.encode_text([""] * len(prompts), batch.fps)
                canvas = Canvas(tuple(z.shape[2:]), backend.patch, init=z, strength=strength)
                noise = torch.randn(z.shape, generator=generator)
                tokens = z.shape[2] * (z.shape[3] // backend.patch) * (z.shape[4] // backend.patch)
                z = sample(backend, canvas, noise, cond, uncond, steps=max(2, math.ceil(d.steps * strength)),
                           guidance=Guidance(text=d.guidance), shift=backend.time_shift(tokens))
        mean, std = vae._stats(z)
        recon = vae.gated(vae.decode_raw(z * std + mean))
        loss, stats = reconstruction_loss(recon, batch.video, batch.objects, cfg.object_weight,
                                          cfg.temporal_weight, cfg.edge_weight, cfg.object_margin)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        warm = min(1.0, (step + 1) / max(1, cfg.warmup))
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * warm
        optimizer.step()
        with torch.no_grad():
            for e, p in zip(ema.parameters(), vae.parameters()):
                e.lerp_(p, 1 - (cfg.ema if step >= cfg.warmup else 0.0))
        step += 1
        if step % cfg.log_every == 0:
            row = {"step": step, "loss": round(loss.item(), 5), "strength": round(strength, 3),
                   "psnr": round(stats["psnr"], 2), "grad_norm": round(float(grad_norm), 3),
                   "sec_per_step": round((time.time() - started) / step, 2)}
            print(json.dumps(row), flush=True)
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
        if step % 50 == 0:
            save()
    save()


if __name__ == "__main__":
    main()
