"""Decoders compared on the same generated latents: the first model's DiT samples every clip once,
and each model's VAE decodes those latents. A decoder-only fine-tune keeps the encoder, so the
DiT's latents mean the same to all of them, and only the decoding differs. One JSON line per model.

    nice python benchmarks/decoders.py --models weights runs/candidate \
        --captions-file benchmarks/results/stop10/validation_captions_2.txt --captions 64 --seeds 2
"""

from __future__ import annotations

import argparse
import json

import torch
from quality import HELDOUT, PARTS, mean_of

from cinegen.data import read_captions
from cinegen.evaluate import evaluate_clip
from cinegen.pipeline import GenerateRequest, Pipeline, to_uint8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", required=True, help="model directories; the first one's DiT samples")
    parser.add_argument("--captions-file", default=str(HELDOUT))
    parser.add_argument("--captions", type=int, default=64)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--size", type=int, default=96, help="square side; a multiple of 16, so nothing is cropped")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sampler = Pipeline.load(args.models[0], device="cpu")
    backends = {m: (sampler if m == args.models[0] else Pipeline.load(m, device="cpu")).backend for m in args.models}
    captions = read_captions(args.captions_file)[: args.captions]
    rows: dict[str, list[dict]] = {m: [] for m in args.models}
    for caption in captions:
        req = GenerateRequest(caption, width=args.size, height=args.size, seconds=2, fps=8, seed=0, batch=args.seeds)
        latents = sampler.run(req).latents
        for model, backend in backends.items():
            rows[model] += [evaluate_clip(v, 8, caption) for v in to_uint8(backend.decode_latent(latents))]
    for model, clips in rows.items():
        print(json.dumps({"benchmark": "decoders", "model": model, "sampled_by": args.models[0],
                          "captions_file": args.captions_file, "clips": len(clips),
                          **{k: mean_of(clips, k) for k in PARTS}}), flush=True)


if __name__ == "__main__":
    main()
