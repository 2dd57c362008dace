"""`cinegen models`: which models are installed, where, and whether cinegen can run them."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from cinegen.errors import UserError


def hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"


def describe(path: Path) -> dict:
    """One row: name, family, pipeline (a diffusers directory's `_class_name`), status ('ok' or the
    one-line reason it cannot run), path."""
    from cinegen.backends.loading import FAMILIES, model_kind, read_model_index

    kind = model_kind(path)
    row = {"name": path.name, "family": "", "status": "ok", "path": str(path)}
    if kind == "native":
        try:
            row["name"] = json.loads((path / "config.json").read_text()).get("name", path.name)
        except (json.JSONDecodeError, AttributeError):
            row["status"] = "config.json is not valid"
        row["family"] = "cinegen"
        return row
    if kind != "diffusers":
        return row | {
            "status": "not a model directory (needs model_index.json or config.json + model.safetensors)"
        }
    try:
        row["pipeline"] = json.loads((path / "model_index.json").read_text()).get("_class_name", "")
    except json.JSONDecodeError:
        pass  # read_model_index says so
    try:
        index = read_model_index(path)
        row["family"] = FAMILIES[index["_class_name"]][0]
    except UserError as e:
        row["status"] = str(e)
    return row


def find_models(extra_dirs: list[str]) -> list[dict]:
    """The shipped model, $CINEGEN_MODELS and given folders (each a model or a folder of models), and
    the video pipelines in the Hugging Face cache."""
    from cinegen.backends.loading import FAMILIES, NOT_YET, model_kind
    from cinegen.pipeline import DEFAULT_MODEL_DIR

    roots = [
        DEFAULT_MODEL_DIR,
        *[Path(d) for d in os.environ.get("CINEGEN_MODELS", "").split(os.pathsep) if d],
    ]
    roots += [Path(d) for d in extra_dirs]
    rows, seen = [], set()
    for root in roots:
        root = root.expanduser()
        if not root.is_dir():
            if root != DEFAULT_MODEL_DIR:
                raise UserError(f"models folder {str(root)!r} does not exist")
            continue
        candidates = [root] if model_kind(root) else sorted(p for p in root.iterdir() if p.is_dir())
        for path in candidates:
            if model_kind(path) and path.resolve() not in seen:
                seen.add(path.resolve())
                rows.append(describe(path))
    cache = hub_cache()
    if cache.is_dir():
        for index in sorted(cache.glob("models--*/snapshots/*/model_index.json")):
            try:
                class_name = json.loads(index.read_text()).get("_class_name")
            except json.JSONDecodeError:
                continue
            if class_name in FAMILIES or class_name in NOT_YET:
                row = describe(index.parent)
                row["name"] = index.parents[2].name.removeprefix("models--").replace("--", "/")
                rows.append(row)
    return rows


def cmd_models(args: argparse.Namespace) -> int:
    if args.check:
        from cinegen.backends.loading import read_model_index, resolve_model_path

        path = resolve_model_path(args.check)
        row = describe(path)
        if row["status"] != "ok":
            raise UserError(
                row["status"] if row["path"] in row["status"] else f"{row['path']!r}: {row['status']}"
            )
        if (path / "model_index.json").is_file():
            read_model_index(path)
        print(json.dumps(row) if args.json else f"{row['name']}  {row['family']}  ok  {row['path']}")
        return 0
    rows = find_models(args.dir)
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    if not rows:
        print("no models found (the shipped model is in weights/; pass --dir FOLDER or set CINEGEN_MODELS)")
        return 0
    table = [("name", "family", "pipeline", "status", "path")] + [
        (r["name"], r["family"] or "-", r.get("pipeline") or "-", r["status"], r["path"]) for r in rows
    ]
    widths = [max(len(row[k]) for row in table) for k in range(3)]  # status and path: as long as they are
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths)), row[3].ljust(6), row[4], sep="  ")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list installed models (cinegen, Wan, LTX-Video, CogVideoX) and where",
        description="List the models cinegen can run: the shipped model, folders in CINEGEN_MODELS "
        "or --dir, and Wan / LTX-Video / CogVideoX pipelines in the Hugging Face cache.",
    )
    p.add_argument(
        "--dir", action="append", default=[], help="a model folder or a folder of models (repeatable)"
    )
    p.add_argument("--check", metavar="MODEL", help="check one model directory or hub id and exit")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_models)
