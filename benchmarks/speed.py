"""Speed of the shipped model on this machine: demo wall time, per-step time, tokens/s, FLOP/s.

Prints one JSON line per result. The denoiser's achieved FLOP/s is compared with a plain
float32 matmul measured in the same run, so the ratio is meaningful across machines.

    OMP_NUM_THREADS=2 python benchmarks/speed.py [--model weights] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from cinegen.models import autoencoder
from cinegen.pipeline import GenerateRequest, Pipeline

# width, height, frames: the default model's three trained shapes (1:1, 16:9, 9:16).
SIZES = ((128, 128, 17), (224, 128, 17), (128, 224, 33))


def matmul_flops_per_second(n: int = 1024, repeats: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def emit(**record) -> None:
    print(json.dumps(record), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    # The README demo, as a user runs it: a fresh process, default settings, model load included.
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "cinegen.cli", "generate", "a big red ball moves right on a white background",
               "-o", str(Path(tmp) / "demo.mp4"), "-q"] + (["--model", args.model] if args.model else [])
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        emit(benchmark="demo_wall_seconds", seconds=round(time.perf_counter() - start, 2), threads=args.threads)

    start = time.perf_counter()
    pipe = Pipeline.load(args.model, device="cpu")
    emit(benchmark="model_load_seconds", seconds=round(time.perf_counter() - start, 2))
    backend = pipe.backend
    peak = matmul_flops_per_second()
    emit(benchmark="matmul_flops", gflops=round(peak / 1e9, 2), threads=args.threads)

    for width, height, frames in SIZES:
        geometry = pipe.geometry(GenerateRequest("x", width=width, height=height, frames=frames))
        noise = pipe.noise(geometry, 0, 2)  # batch 2: the conditional and unconditional passes of guidance
        context = backend.encode_text(["a red ball moves right", ""], geometry.fps)
        t = torch.full((2, *[d // s for d, s in zip(geometry.latent, (1, backend.patch, backend.patch))]), 0.5)
        with FlopCounterMode(display=False) as counter:
            backend.velocity(noise, t, context)
        flops = counter.get_total_flops()
        backend.velocity(noise, t, context)
        start = time.perf_counter()
        for _ in range(args.repeats):
            backend.velocity(noise, t, context)
        step = (time.perf_counter() - start) / args.repeats
        tokens = t[0].numel()
        emit(benchmark="denoiser_step", width=width, height=height, frames=frames, tokens=tokens,
             seconds_per_step=round(step, 4), tokens_per_second=round(2 * tokens / step, 1),
             gflops=round(flops / step / 1e9, 2), fraction_of_matmul=round(flops / step / peak, 3))

        # VAE decode with CausalConv3d's direct oneDNN call, and with PyTorch's own dispatch.
        latent = noise[:1]
        seconds, onednn_before = {}, autoencoder._ONEDNN
        for onednn in (True, False):
            autoencoder._ONEDNN = onednn
            backend.decode_latent(latent)
            start = time.perf_counter()
            for _ in range(args.repeats):
                backend.decode_latent(latent)
            seconds[onednn] = (time.perf_counter() - start) / args.repeats
        autoencoder._ONEDNN = onednn_before
        emit(benchmark="vae_decode", width=width, height=height, frames=frames, seconds=round(seconds[True], 4),
             seconds_pytorch_dispatch=round(seconds[False], 4), speedup=round(seconds[False] / seconds[True], 2))


if __name__ == "__main__":
    main()
