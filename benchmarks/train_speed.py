"""Training throughput of the default denoiser: one JSON line per batch size.

Each step is the trainer's own (`train.denoiser_loss` on a random canvas, backward, clipping,
AdamW, under the trainer's autocast) on random latents of one clip shape, so it measures the
model and the step's host-side work, not the data loader. `host_share` is the part of a step
spent building the canvas masks on the CPU (`train.random_canvas_masks`), measured alone.

    python benchmarks/train_speed.py --batches 16,64          # CPU
    python benchmarks/train_speed.py --batches 128,512,1024   # on a GPU (bf16 autocast)
"""

import argparse
import json
import time

import torch

from cinegen.backends.native import NativeBackend
from cinegen.config import TrainConfig
from cinegen.text import TextEmbedding
from cinegen.train import autocast, denoiser_loss, random_canvas_masks


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="weights")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batches", default="16,64", help="comma-separated clips per step")
    ap.add_argument("--latent", default="5,16,16", help="latent frames,height,width (128x128, 17 frames)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per batch size, after 3 warm-up steps")
    args = ap.parse_args()
    device = torch.device(args.device)
    model = NativeBackend.load(args.model, torch.device("cpu"), text_encoder=False)
    dit = model.dit.to(device).train()
    cfg = TrainConfig(canvas_share=0.65, context_noise=0.3)
    optimizer = torch.optim.AdamW(dit.parameters(), lr=1e-5)
    t_len, h, w = (int(v) for v in args.latent.split(","))
    p, channels = dit.config.patch_size, dit.config.latent_channels
    text_dim, text_len = model.config.text_encoder.dim, 16
    for batch in (int(b) for b in args.batches.split(",")):
        generator = torch.Generator().manual_seed(0)
        x0 = torch.randn(batch, channels, t_len, h, w, device=device)
        text = TextEmbedding(torch.randn(batch, text_len, text_dim), torch.ones(batch, text_len, dtype=torch.bool),
                             torch.randn(batch, text_dim)).to(device)
        fps = torch.full((batch,), 8.0, device=device)

        def step() -> None:
            with autocast(cfg.precision, device):
                loss, _ = denoiser_loss(dit, x0, text, fps, cfg, generator)  # noqa: B023
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(dit.parameters(), cfg.grad_clip)
            optimizer.step()

        for _ in range(3):
            step()
        synchronize(device)
        started = time.perf_counter()
        for _ in range(args.steps):
            step()
        synchronize(device)
        seconds = (time.perf_counter() - started) / args.steps
        started = time.perf_counter()
        random_canvas_masks(batch, (t_len, h // p, w // p), cfg.canvas_share, generator)
        host = time.perf_counter() - started
        tokens = batch * t_len * (h // p) * (w // p)
        print(json.dumps({"benchmark": "train_speed", "device": torch.cuda.get_device_name() if device.type == "cuda"
                          else "cpu", "threads": torch.get_num_threads(), "batch": batch, "latent": [t_len, h, w],
                          "sec_per_step": round(seconds, 4), "clips_per_s": round(batch / seconds, 1),
                          "tokens_per_s": round(tokens / seconds), "host_share": round(host / seconds, 3)}),
              flush=True)


if __name__ == "__main__":
    main()
