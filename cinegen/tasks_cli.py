"""`cinegen edit | extend | connect | loop | finalize`: the canvas tasks on the command line.

Each command only turns its arguments into a `GenerateRequest` (or, for `finalize`, reads a
draft's state) and calls the same `cinegen.pipeline` functions the server uses.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from cinegen.cli import (
    add_generation_options,
    check_recorded_inputs,
    memory_options,
    request_from_args,
    run_request,
    sigterm_raises,
    writing,
)
from cinegen.errors import UserError

DRAFT_LATENT_SUFFIX = ".latent.safetensors"


def _prompt_args(p: argparse.ArgumentParser, optional: bool = False) -> None:
    if optional:
        p.add_argument("prompt", nargs="?", default="", help="what the video shows")
    else:
        p.add_argument("prompt", help="what the video shows")


def cmd_edit(args: argparse.Namespace) -> int:
    req = request_from_args(
        args,
        task="edit",
        video=args.source,
        mask=args.mask,
        strength=args.strength,
        source_prompt=args.source_prompt,
    )
    return run_request(args, req)


def cmd_extend(args: argparse.Namespace) -> int:
    return run_request(
        args, request_from_args(args, task="extend", video=args.source, backward=args.backward)
    )


def cmd_connect(args: argparse.Namespace) -> int:
    return run_request(args, request_from_args(args, task="connect", video=args.first, video_b=args.second))


def cmd_loop(args: argparse.Namespace) -> int:
    if not args.prompt and not args.video:
        raise UserError("give a PROMPT, or --video SRC.mp4 to turn a clip into a loop")
    return run_request(args, request_from_args(args, task="loop", video=args.video))


# ----------------------------------------------------------------------------- draft → final


def write_draft_state(output: Path, record: dict, latent) -> Path:
    """Save the draft's latent beside its video (atomically) and name it in the JSON sidecar record."""
    from safetensors.torch import save_file

    from cinegen.media import _atomic_target

    target = output.with_suffix(DRAFT_LATENT_SUFFIX)
    with _atomic_target(target) as tmp:
        save_file({"latent": latent.contiguous()}, str(tmp))
    record["draft"]["latent"] = target.name
    return target


def read_draft_state(path: str) -> tuple[dict, object]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    draft_path = Path(path)
    if not draft_path.is_file():
        raise UserError(f"draft {path!r} does not exist")
    try:
        record = json.loads(draft_path.read_text())
        state = record["draft"]
        latent_path = draft_path.parent / state["latent"]
        final = state["final"]
        request = dict(record["request"], width=final["width"], height=final["height"], steps=final["steps"])
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, KeyError, TypeError):
        # RecursionError: JSON nested too deep to parse.
        raise UserError(f"{path!r} is not the JSON of a draft (cinegen generate --draft)") from None
    if not latent_path.is_file():
        raise UserError(
            f"draft latent {str(latent_path)!r} is missing (it is written beside the draft video)"
        )
    try:
        latent = load_file(str(latent_path))["latent"]
    except (SafetensorError, KeyError, OSError):
        raise UserError(f"draft latent {str(latent_path)!r} is not readable") from None
    # The draft's own request too: a final's sidecar keeps it, to make the draft again (`generate --from`).
    return dict(record, request=request, draft_request=record["request"]), latent


@sigterm_raises()
def cmd_finalize(args: argparse.Namespace) -> int:
    from cinegen.media import check_output_path
    from cinegen.pipeline import FINALIZE_ANCHOR_UNTIL, FINALIZE_STRENGTH, GenerateRequest, Pipeline

    output = check_output_path(args.output)
    record, latent = read_draft_state(args.draft)
    req = GenerateRequest.from_dict(record["request"])
    state = record["draft"]
    strength = args.strength if args.strength is not None else state.get("strength", FINALIZE_STRENGTH)
    anchor_until = args.anchor_until if args.anchor_until is not None else state.get("anchor_until", FINALIZE_ANCHOR_UNTIL)
    _check_numbers(f"draft {args.draft!r}", strength, anchor_until)
    # The final pins the draft's --image / --last-image: another file there makes a final that
    # `generate --from final.json` cannot make again (it remakes the draft from the file as it is now).
    digests = check_recorded_inputs(args.draft, req, record.get("inputs_sha256"))
    pipe = Pipeline.load(args.model, device=args.device, dtype=args.dtype, **memory_options(args))
    return _finalize(args, output, pipe, req, latent, strength, anchor_until, record["draft_request"], digests)


@sigterm_raises()
def finalize_again(args: argparse.Namespace, req, finalized: dict, digests: dict[str, str]) -> int:
    """`generate --from final.json`: the final of a draft made again, from the draft's request recorded
    in it (its latent is made anew, not read) and the finalize's strength and anchor. Replayed as a
    plain request, the final was a different video: a full-size generation from noise."""
    from cinegen.media import check_output_path
    from cinegen.pipeline import GenerateRequest, Pipeline

    output = check_output_path(args.output)
    if not isinstance(finalized, dict):
        raise UserError(f"{args.from_record!r} has finalized_from_draft {finalized!r}; it must be an object")
    # A final from before the anchor (e62573c) records none: it was made without one, as 1 makes it.
    strength, anchor_until = finalized.get("strength"), finalized.get("anchor_until", 1.0)
    _check_numbers(f"{args.from_record!r} (finalized from a draft)", strength, anchor_until)
    draft_request = finalized.get("draft_request")
    pipe = Pipeline.load(args.model, device=args.device, dtype=args.dtype, **memory_options(args))
    if draft_request is None:  # a record from before the draft's request was kept: the draft generate --draft makes
        draft = pipe.draft(dataclasses.replace(req, draft=True, batch=1), show_progress=not args.quiet)
    else:
        draft = pipe.run(GenerateRequest.from_dict(draft_request), show_progress=not args.quiet)
    return _finalize(args, output, pipe, req, draft.latents[:1], strength, anchor_until, draft.metadata["request"],
                     digests)


def _check_numbers(where: str, strength, anchor_until) -> None:
    for name, value in (("strength", strength), ("anchor_until", anchor_until)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UserError(f"{where} has {name} {value!r}; it must be a number")


def _finalize(args, output: Path, pipe, req, latent, strength, anchor_until, draft_request: dict,
              digests: dict[str, str]) -> int:
    """Finish the draft `latent` at `req`'s full size and write it with its sidecar, which keeps the
    draft's own request so that `generate --from` makes the same final again, and the inputs' sha256
    (`digests`, taken by `check_recorded_inputs` before the model loaded)."""
    from cinegen.media import write_sidecar, write_video

    req = dataclasses.replace(req, draft=False, batch=1)
    started = time.perf_counter()
    result = pipe.finalize(req, latent[:1], strength, anchor_until, show_progress=not args.quiet)
    result.metadata["finalize_seconds"] = round(time.perf_counter() - started, 3)
    result.metadata["finalized_from_draft"] = dict(result.metadata["finalized_from_draft"], draft_request=draft_request)
    if digests:
        result.metadata["inputs_sha256"] = digests
    with writing(output):  # frames to .png: the first's file
        written = write_video(output, result.frames, result.fps, result.metadata)
        write_sidecar(output, result.metadata)
    print(written)
    return 0


def add_commands(sub) -> None:
    e = sub.add_parser(
        "edit",
        help="restyle a video (SDEdit / FlowEdit), or regenerate a masked region",
        description="Edit a video to match PROMPT. White pixels of --mask are regenerated, the rest "
        "is kept exactly; --source-prompt switches to FlowEdit, which keeps more.",
    )
    e.add_argument("source", help="the video to edit")
    _prompt_args(e)
    e.add_argument(
        "--strength", type=float, help="how much to change, in (0, 1] (default 0.6; 1 with --mask)"
    )
    e.add_argument("--source-prompt", help="what the source shows: FlowEdit-style edit that keeps more of it")
    e.add_argument("--mask", help="black/white image or video of the source's size: white is regenerated "
                   "(transparent pixels count as black)")
    add_generation_options(e)
    e.set_defaults(func=cmd_edit)

    x = sub.add_parser(
        "extend",
        help="continue a video after its end (or before its start)",
        description="Add --seconds (default 2) to a clip; the output holds the clip and the new part.",
    )
    x.add_argument("source", help="the video to continue")
    _prompt_args(x)
    x.add_argument("--backward", action="store_true", help="generate what comes before the clip")
    add_generation_options(x)
    x.set_defaults(func=cmd_extend)

    c = sub.add_parser(
        "connect",
        help="a transition from the end of A to the start of B",
        description="Output A, a generated transition of about --seconds (default 1), then B.",
    )
    c.add_argument("first", help="video A")
    c.add_argument("second", help="video B")
    _prompt_args(c)
    add_generation_options(c)
    c.set_defaults(func=cmd_connect)

    lp = sub.add_parser(
        "loop",
        help="a seamless loop from text, or turn a clip into one",
        description="Text: sample on circular time. --video: the clip, then a bridge back to its start.",
    )
    _prompt_args(lp, optional=True)
    lp.add_argument("--video", help="a clip to turn into a loop")
    add_generation_options(lp)
    lp.set_defaults(func=cmd_loop)

    f = sub.add_parser(
        "finalize",
        help="render a draft (generate --draft) at full resolution",
        description="Upsample a draft's latent, re-noise it and finish it at full size.",
    )
    f.add_argument("draft", help="the draft's JSON sidecar (draft.json)")
    f.add_argument("--model", help="model directory (default: the shipped model in weights/)")
    f.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    f.add_argument("--dtype", default="auto", help="auto | fp32 | bf16 | fp16")
    f.add_argument("-o", "--output", default="final.mp4", help="output file: .mp4 .webm .gif .png .jpg")
    f.add_argument("--strength", type=float, default=None,
                   help="noise level the draft is re-noised to, in (0, 1] (default: the draft's, 0.6); "
                        "higher redraws more")
    f.add_argument("--anchor-until", type=float, default=None, metavar="T",
                   help="keep what the draft drew at its own resolution while the noise level is at least T, "
                        "in [0, 1] (default: the draft's, 1: not at all; 0: to the end)")
    f.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    f.set_defaults(func=cmd_finalize)
