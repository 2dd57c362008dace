"""cinegen vs each family's own diffusers pipeline on the same tiny model: wall time per video.

Same components, noise, steps, guidance and scheduler, measured in one process, alternating
runs, median of `--repeats`. Prints one JSON line per result: the base ratio with where time
goes (text encoder, denoiser steps, VAE decode) and the ratio of each speed option
(guidance 1 skips the unconditional pass, a batch shares one text embedding, step caching
for drafts, optionally torch.compile).

    OMP_NUM_THREADS=1 python benchmarks/open_models.py --families wan ltx cogvideox --repeats 5

`--device cuda` runs both pipelines on the GPU (fp32, the parity setting); every timed span
then ends with a device synchronise, so queued kernels are counted where they were launched.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from contextlib import contextmanager

import torch

from cinegen.backends.tiny import pipeline_class, save_tiny
from cinegen.pipeline import GenerateRequest, Pipeline

PROMPT, NEGATIVE = "a red ball rolls left on the green grass", "dog"


def synchronize() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class PartTimer:
    """Wall time of the diffusers pipeline's parts, by wrapping its components' calls."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def wrap(self, obj, attr: str, name: str):
        original = getattr(obj, attr)

        def timed(*args, **kwargs):
            synchronize()
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                synchronize()
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

        setattr(obj, attr, timed)


def diffusers_call(
    family: str,
    pipe,
    noise: torch.Tensor,
    width: int,
    height: int,
    frames: int,
    steps: int,
    guidance: float,
    batch: int,
    fps: float,
):
    kwargs = dict(
        prompt=[PROMPT] * batch,
        negative_prompt=[NEGATIVE] * batch,
        num_inference_steps=steps,
        guidance_scale=guidance,
        width=width,
        height=height,
        num_frames=frames,
        output_type="np",
    )
    if family == "wan":
        kwargs["latents"] = noise
    elif family == "ltx":
        kwargs["latents"] = noise.flatten(2).transpose(1, 2)
        kwargs["frame_rate"] = int(fps)
    else:
        kwargs["latents"] = noise.transpose(1, 2)
        kwargs["max_sequence_length"] = pipe.transformer.config.max_text_seq_length
    return kwargs


@contextmanager
def timer(out: list[float]):
    synchronize()
    start = time.perf_counter()
    yield
    synchronize()
    out.append(time.perf_counter() - start)


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def bench_family(family: str, args) -> list[dict]:
    directory = save_tiny(family, tempfile.mkdtemp(prefix=f"cinegen-bench-{family}-"))
    ours = Pipeline.load(directory, device=args.device, dtype="fp32")
    backend = ours.backend
    theirs = pipeline_class(family)(**backend.components)
    theirs.set_progress_bar_config(disable=True)
    parts = PartTimer()
    parts.wrap(theirs.text_encoder, "forward", "text_encoder")
    parts.wrap(theirs.transformer, "forward", "denoiser")
    parts.wrap(theirs.vae, "decode", "vae_decode")
    side = max(32, backend.size_multiple)
    frames = 1 + 2 * backend.time_factor
    fps = ours.defaults.fps
    results = []

    def measure(
        label: str,
        guidance: float,
        batch: int = 1,
        step_cache: int = 0,
        cached_text: bool = False,
        compiled: bool = False,
    ) -> dict:
        req = GenerateRequest(
            prompt=PROMPT,
            negative=NEGATIVE,
            width=side,
            height=side,
            frames=frames,
            steps=args.steps,
            guidance=guidance,
            seed=0,
            batch=batch,
            fps=fps,
        )
        geometry = ours.validate(req)
        noise = ours.noise(geometry, 0, batch)
        backend.options.step_cache = step_cache
        t_ours, t_theirs, our_parts, their_parts = [], [], [], []
        kwargs = diffusers_call(family, theirs, noise, side, side, frames, args.steps, guidance, batch, fps)
        result = None

        def run_ours():
            nonlocal result
            backend.timings.reset()
            backend.reset_step_cache()
            if not cached_text:
                backend._text_cache.clear()
            with timer(t_ours):
                result = ours.run(req)

        def run_theirs():
            parts.seconds = {}
            with timer(t_theirs), torch.no_grad():
                theirs(**kwargs)
            # Read now: both pipelines share the modules whose calls `parts` times.
            their_parts.append(dict(parts.seconds))

        for i in range(args.repeats + 1):
            # Who runs first alternates: the second of a pair can find caches and the allocator warm.
            for run in (run_ours, run_theirs) if i % 2 == 0 else (run_theirs, run_ours):
                run()
            our_parts.append(dict(backend.timings.seconds))
        # The first round warms up both.
        t_ours, t_theirs, our_parts, their_parts = t_ours[1:], t_theirs[1:], our_parts[1:], their_parts[1:]

        def part_medians(rows):
            return {k: round(median([r.get(k, 0.0) for r in rows]) / batch, 5) for k in rows[0]}

        row = {
            "benchmark": "open_models",
            "family": family,
            "variant": label,
            "steps": args.steps,
            "guidance": guidance,
            "batch": batch,
            "frames": frames,
            "size": side,
            "repeats": args.repeats,
            "cinegen_s_per_video": round(median(t_ours) / batch, 5),
            "diffusers_s_per_video": round(median(t_theirs) / batch, 5),
            "ratio": round(median(t_ours) / median(t_theirs), 3),
            "cinegen_parts": part_medians(our_parts),
            "diffusers_parts": part_medians(their_parts),
            "threads": torch.get_num_threads(),
            "device": str(backend.device),
            "compiled": compiled,
        }
        if label == "base":
            theirs_latent = theirs(**(kwargs | {"output_type": "latent"}))[0]
            if family == "ltx":
                f, h, w = geometry.latent
                theirs_latent = theirs_latent.transpose(1, 2).reshape(batch, -1, f, h, w)
            elif family == "cogvideox":
                theirs_latent = theirs_latent.transpose(1, 2)
            row["max_abs_latent_diff"] = float((result.latents.cpu() - theirs_latent.cpu()).abs().max())
        print(json.dumps(row), flush=True)
        return row

    results.append(measure("base", guidance=5.0))
    results.append(measure("guidance_1", guidance=1.0))
    results.append(measure("batch_4_shared_text", guidance=5.0, batch=4, cached_text=True))
    results.append(measure("step_cache_1", guidance=5.0, step_cache=1))
    if args.compile:
        backend.transformer = torch.compile(backend.transformer)
        results.append(measure("torch_compile", guidance=5.0, compiled=True))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=["wan", "ltx", "cogvideox"])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile of the denoiser")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = parser.parse_args()
    for family in args.families:
        bench_family(family, args)


if __name__ == "__main__":
    main()
