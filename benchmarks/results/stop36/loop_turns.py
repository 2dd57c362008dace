"""Text loops' seams against how many turns the loop is decoded over (the pipeline decodes two and
keeps the second): the latents are sampled once per caption by the pipeline (seed 0, 2 s, as
`benchmarks/tasks.py --tasks loop` does), then decoded by each autoencoder with 2, 3 and 4 turns.

    python benchmarks/results/stop36/loop_turns.py weights runs/cand36A > rows.jsonl
"""
import json
import sys

import torch

import cinegen.pipeline as pipeline
from cinegen.data import read_captions
from cinegen.evaluate import evaluate_clip
from cinegen.pipeline import GenerateRequest, Pipeline, to_uint8
from cinegen.train import load_autoencoder

HELDOUT = "benchmarks/heldout_captions.txt"


def main() -> None:
    torch.set_num_threads(1)
    model, vaes = sys.argv[1], {name: load_autoencoder(name).eval() for name in sys.argv[1:]}
    pipe = Pipeline.load(model, device="cpu")
    latents = []
    task_loop = pipeline.TASK_FUNCTIONS["loop"]

    def recording(job):
        out = task_loop(job)
        latents.append(job.last_latent)
        return out

    pipeline.TASK_FUNCTIONS["loop"] = recording
    for caption in read_captions(HELDOUT)[:64]:
        pipe.run(GenerateRequest(prompt=caption, task="loop", seconds=2, seed=0))
        latent = latents[-1]
        row = {"caption": caption}
        for name, vae in vaes.items():
            for turns in (2, 3, 4):
                with torch.inference_mode():
                    video = to_uint8(vae.decode(torch.cat([latent] * turns, dim=2)).clamp(-1, 1))[0]
                frames = video[-4 * latent.shape[2]:]  # the last turn: 4 frames a latent frame
                row[f"{name}:{turns}"] = round(evaluate_clip(frames, 8.0, caption, task="loop")["seam_ratio"], 4)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
