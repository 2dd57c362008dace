"""What the VAE alone keeps of the held-out event scenes: each of the 24 captions of
benchmarks/heldout_event_captions.txt rendered at the model's default size and fps, as many
frames as `tasks.py --events` generates (4 s: 33 at 8 fps), passed through the model's VAE
(encode, decode) and scored by `cinegen eval` like a generated clip. A denoiser on these latents
can do no better.

    python events_ceiling.py --model ../../../weights > events_ceiling_weights.jsonl
"""

import argparse
import json
import sys
from pathlib import Path

import torch

from cinegen.evaluate import evaluate_clip
from cinegen.pipeline import Pipeline, frame_count
from cinegen.world import parse_caption, render

sys.path.insert(0, str(Path(__file__).parents[2]))
from quality import vae_round_trip  # noqa: E402
from tasks import EVENT_CAPTIONS, EVENT_KEYS, events_summary, read_captions  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="weights")
ap.add_argument("--source", choices=["round_trip", "world"], default="round_trip",
                help="world: score the rendered clips themselves (the detector's own ceiling)")
args = ap.parse_args()
torch.manual_seed(0)
pipe = Pipeline.load(args.model, device="cpu")
d = pipe.backend.config.sampling
rows = []
for caption in read_captions(EVENT_CAPTIONS):
    frames = render(parse_caption(caption), width=d.width, height=d.height, fps=d.fps,
                    num_frames=frame_count(4, d.fps, pipe.backend.time_factor)).frames
    if args.source == "round_trip":
        frames = vae_round_trip(pipe, frames)
    m = evaluate_clip(frames, d.fps, caption)
    row = {"caption": caption} | {k: m.get(k) for k in EVENT_KEYS}
    rows.append(row)
    print(json.dumps(row), flush=True)
print(json.dumps({"benchmark": "events_vae_ceiling", "model": args.model, "source": args.source, "clips": len(rows)}
                 | events_summary(rows)))
