"""Draft → final: time of the half-size draft, of finalizing it, and of a direct full render; and
PSNR(final downscaled to the draft's size, draft). One JSON line per prompt.

    nice -n 19 env OMP_NUM_THREADS=1 python benchmarks/draft_final.py --model weights --clips 3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from quality import HELDOUT

import cinegen.pipeline
from cinegen.data import read_captions
from cinegen.evaluate import evaluate_clip, task_metrics
from cinegen.pipeline import (
    DRAFT_MIN_SIDE,
    DRAFT_STEP_DIVISOR,
    FINALIZE_ANCHOR_UNTIL,
    FINALIZE_STRENGTH,
    GenerateRequest,
    Pipeline,
)


def timed(fn, *args):
    started = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=None)
    ap.add_argument("--clips", type=int, default=3)
    ap.add_argument("--width", type=int, default=None)
    ap.add_argument("--height", type=int, default=None)
    ap.add_argument("--strength", type=float, default=FINALIZE_STRENGTH, help="finalize's re-noise level")
    ap.add_argument("--anchor-until", type=float, default=FINALIZE_ANCHOR_UNTIL,
                    help="keep the draft's low frequencies while t >= this (1: never)")
    ap.add_argument("--step-divisor", type=int, default=DRAFT_STEP_DIVISOR,
                    help="the draft runs this many times fewer steps than the final")
    ap.add_argument("--draft-min-side", type=int, default=DRAFT_MIN_SIDE, help="the draft's smallest short side")
    ap.add_argument("--captions-file", type=Path, default=HELDOUT,
                    help="captions, one per line (training captions to choose settings on)")
    ap.add_argument("--adherence", action="store_true",
                    help="also score the draft, the final and the full render against the caption")
    args = ap.parse_args()
    # Both are read at each call (Pipeline.draft, draft_size).
    cinegen.pipeline.DRAFT_STEP_DIVISOR, cinegen.pipeline.DRAFT_MIN_SIDE = args.step_divisor, args.draft_min_side
    torch.set_num_threads(1)
    pipe = Pipeline.load(args.model, device="cpu")
    pipe.run(GenerateRequest("warm up", frames=1, steps=1))
    for caption in read_captions(args.captions_file)[: args.clips]:
        req = GenerateRequest(caption, width=args.width, height=args.height, seed=0)
        # The caption's embedding is cached per process: encoded here, neither the draft nor its
        # finalize pays for it (before, the draft did and its finalize did not). As two commands,
        # each process encodes it once.
        pipe.backend.encode_text([caption], pipe.defaults.fps)
        draft, t_draft = timed(pipe.draft, req)
        final, t_final = timed(pipe.finalize, req, draft.latents, args.strength, args.anchor_until)
        full, t_full = timed(pipe.run, req)
        psnr = task_metrics(final.frames, final.fps, "draft", draft.frames)["draft_psnr"]
        scores = {}
        if args.adherence:
            scores = {f"{name}_adherence": evaluate_clip(video.frames, video.fps, caption)["adherence"]
                      for name, video in (("draft", draft), ("final", final), ("full_render", full))}
        print(
            json.dumps(
                {
                    "benchmark": "draft_final",
                    "caption": caption,
                    "captions_file": str(args.captions_file),
                    "strength": args.strength,
                    "step_divisor": args.step_divisor,
                    "anchor_until": args.anchor_until,
                    "draft_size": list(draft.frames.shape[1:3]),
                    "final_size": list(final.frames.shape[1:3]),
                    "draft_s": round(t_draft, 3),
                    "finalize_s": round(t_final, 3),
                    "full_render_s": round(t_full, 3),
                    "draft_over_finalize": round(t_draft / t_final, 3),
                    "draft_over_full_render": round(t_draft / t_full, 3),
                    "draft_psnr": round(psnr, 2),
                }
                | scores
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
