"""`cinegen world render|sample` and `cinegen eval`, registered on the lead's parser.

Numbers are parsed here (not by argparse `type=`) so a bad value is a one-line `UserError`
(exit 2) rather than argparse's usage dump; outputs are validated before any work and
written atomically, so a failure leaves no partial file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from cinegen.errors import UserError


def _number(value: str, name: str, kind=float):
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise UserError(
            f"--{name} must be a {'whole ' if kind is int else ''}number, got {value!r}"
        ) from None


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def cmd_render(args: argparse.Namespace) -> int:
    from cinegen.media import check_output_path, write_video
    from cinegen.world import iter_render, parse_caption

    scene = parse_caption(args.caption)
    width, height = _number(args.width, "width", int), _number(args.height, "height", int)
    fps, seconds = _number(args.fps, "fps"), _number(args.seconds, "seconds")
    seed = _number(args.seed, "seed", int)
    out = check_output_path(args.output)
    if args.truth and not Path(args.truth).resolve().parent.is_dir():
        raise UserError(f"folder of --truth {args.truth!r} does not exist")
    layout, count, frames = iter_render(
        scene, width=width, height=height, fps=fps, seconds=seconds, seed=seed, masks=False
    )
    clip, truth = [], []
    for frame, ft in frames:
        clip.append(frame)
        truth.append(ft.to_json())
    meta = {
        "prompt": args.caption,
        "seed": seed,
        "width": width,
        "height": height,
        "fps": fps,
        "seconds": seconds,
    }
    # frames to .png: the first's file
    written = write_video(out, np.stack(clip), fps, metadata={"cinegen": "world", **meta})
    if args.truth:
        record = {"caption": args.caption, **meta, **layout.to_json(), "frames": truth}
        _atomic_text(Path(args.truth), json.dumps(record) + "\n")
    print(written)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from cinegen.media import write_video
    from cinegen.world import random_scene, render, write_caption
    from cinegen.world.render import check_size, frame_count

    n = _number(args.n, "n", int)
    if not 1 <= n <= 100000:
        raise UserError(f"-n must be 1..100000, got {n}")
    width, height = _number(args.width, "width", int), _number(args.height, "height", int)
    fps, seconds = _number(args.fps, "fps"), _number(args.seconds, "seconds")
    seed = _number(args.seed, "seed", int)
    folder = Path(args.output)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{str(folder)!r} exists and is not a folder")
    check_size(width, height)
    frame_count(fps, seconds, None)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        scene = random_scene(rng)
        caption = write_caption(scene, rng)
        clip_seed = int(rng.integers(2**31))
        clip = render(
            scene, width=width, height=height, fps=fps, seconds=seconds, seed=clip_seed, masks=False
        )
        name = f"{i:06d}.mp4"
        write_video(folder / name, clip.frames, fps, metadata={"prompt": caption, "seed": clip_seed})
        lines.append(json.dumps({"video": name, "prompt": caption, "seed": clip_seed, "width": width,
                                 "height": height, "fps": fps, "seconds": seconds}))  # fmt: skip
    _atomic_text(folder / "manifest.jsonl", "\n".join(lines) + "\n")
    print(folder / "manifest.jsonl")
    return 0


def _table(rows: list[dict], keys: tuple[str, ...]) -> str:
    def cell(v) -> str:
        return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    head = ["video", *[k.replace("_right", "") for k in keys]]
    body = [[r.get("video", ""), *[cell(r.get(k)) for k in keys]] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    return "\n".join("  ".join(str(x).ljust(w) for x, w in zip(line, widths)) for line in [head, *body])


def _clip_prompt(video: Path, positional: str | None, option: str | None) -> str:
    """The prompt to score `video` against: the one given (as `PROMPT` or `--prompt`), else the one
    cinegen recorded in the video when it made it (its container comment; see `write_video`)."""
    if positional is not None and option is not None and positional != option:
        raise UserError(f"two prompts given, {positional!r} and --prompt {option!r}; give one")
    given = positional if positional is not None else option
    if given is not None:
        if not given.strip():
            raise UserError("the prompt is empty; give the text the clip was made from")
        return given
    from cinegen.media import check_video, read_metadata

    check_video(video)  # a missing or unreadable file is told so (headers only) before asking for a prompt
    try:
        request = read_metadata(video).get("request", {})
    # Another tool's comment: not JSON, not an object, or nested too deep to parse (RecursionError).
    except (ValueError, AttributeError, OSError, RecursionError):
        request = {}
    recorded = request.get("prompt") if isinstance(request, dict) else None
    if not isinstance(recorded, str) or not recorded.strip():
        storyboard = isinstance(request, dict) and request.get("storyboard")
        why = "it was made from a storyboard: score a shot against its own prompt" if storyboard else \
            "it holds no prompt recorded by cinegen"
        raise UserError(f"give the clip's prompt: cinegen eval {str(video)!r} \"PROMPT\" ({why})")
    print(f"cinegen: note: scoring against the prompt recorded in {str(video)!r}: {recorded!r}", file=sys.stderr)
    return recorded


def cmd_eval(args: argparse.Namespace) -> int:
    from cinegen.evaluate import SUMMARY_KEYS, check_task, evaluate_clip, evaluate_folder
    from cinegen.media import read_video

    if args.task is not None:
        check_task(args.task, args.reference is not None)
    target = Path(args.video)
    reference = read_video(args.reference)[0] if args.reference else None
    reference_b = read_video(args.reference_b)[0] if args.reference_b else None
    joints = [_number(j, "joints", int) for j in args.joints.split(",")] if args.joints else None
    kwargs = dict(task=args.task, reference=reference, reference_b=reference_b, joints=joints)
    if target.is_dir():
        if not args.prompts:
            raise UserError("evaluating a folder needs --prompts prompts.jsonl")
        if args.prompt is not None or args.prompt_option is not None:
            raise UserError("a folder's clips take their prompts from --prompts; leave out PROMPT and --prompt")
        result = evaluate_folder(target, args.prompts, **kwargs)
        if args.json:
            print(json.dumps(result))
        else:
            print(_table(result["clips"], SUMMARY_KEYS))
            print(
                _table(
                    [{"video": f"mean of {result['count']}", **result["summary"]}], SUMMARY_KEYS
                ).splitlines()[1]
            )
        return 0
    prompt = _clip_prompt(target, args.prompt, args.prompt_option)
    frames, fps = read_video(target)
    result = evaluate_clip(frames, fps, prompt, **kwargs)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            if key != "detected":
                print(f"{key:>20}: {value}")
    return 0


def add_commands(subparsers) -> None:
    world = subparsers.add_parser("world", help="the procedural world: render captions, sample datasets")
    wsub = world.add_subparsers(dest="world_command", required=True)

    def size_options(p: argparse.ArgumentParser, seconds: str) -> None:
        p.add_argument("--width", default="128", help="16..1920 px (default 128)")
        p.add_argument("--height", default="128", help="16..1920 px (default 128)")
        p.add_argument("--fps", default="16", help="1..60 (default 16)")
        p.add_argument("--seconds", default=seconds, help=f"clip length, up to 120 (default {seconds})")
        p.add_argument("--seed", default="0", help="layout seed (default 0)")

    r = wsub.add_parser("render", help="render one caption to a video")
    r.add_argument("caption")
    r.add_argument("-o", "--output", required=True, help="video file (.mp4, .webm, .gif)")
    r.add_argument("--truth", help="also write per-frame ground truth as JSON here")
    size_options(r, "2")
    r.set_defaults(func=cmd_render)

    s = wsub.add_parser("sample", help="random captions and clips, with a JSONL manifest")
    s.add_argument("-n", required=True, help="number of clips")
    s.add_argument("-o", "--output", required=True, help="folder (created)")
    size_options(s, "2")
    s.set_defaults(func=cmd_sample)

    e = subparsers.add_parser("eval", help="score a clip (or a folder of clips) against its prompt")
    e.add_argument("video", help="a video file, or a folder with --prompts")
    e.add_argument("prompt", nargs="?", help="the prompt the clip was made from (default: the one cinegen "
                   "recorded in a video it made)")
    e.add_argument("--prompt", dest="prompt_option", metavar="PROMPT", help="the same as PROMPT")
    e.add_argument("--prompts", help='JSONL of {"video": name, "prompt": ...} for a folder')
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--task", choices=None, help="image2video|extend|extend_backward|loop|connect|long|draft")
    e.add_argument(
        "--reference", help="given image/clip (image2video, extend), clip A (connect) or the draft"
    )
    e.add_argument("--reference-b", help="clip B for connect")
    e.add_argument("--joints", help="comma-separated frame indices of window joints (long, connect)")
    e.set_defaults(func=cmd_eval)
