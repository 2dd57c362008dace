"""The `cinegen` command: thin argument parsing over `cinegen.pipeline` and friends.

Errors in the user's input (`UserError`) print one line and exit with code 2; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import sys
import threading
from pathlib import Path

from cinegen.errors import UserError


def _positive_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
    return value


def add_generation_options(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that samples (generate, edit, extend, connect, loop)."""
    g = p.add_argument_group("size and length")
    g.add_argument("--width", type=_positive_int, help="width in pixels (multiple of 16)")
    g.add_argument("--height", type=_positive_int, help="height in pixels (multiple of 16)")
    g.add_argument("--aspect", help="aspect ratio W:H such as 16:9, 9:16, 1:1, 4:3 (with --size)")
    g.add_argument("--size", type=_positive_int, help="short side in pixels, at --aspect (default: the given image's or video's, or the model's)")
    g.add_argument("--seconds", type=float, help="duration in seconds")
    g.add_argument("--fps", type=float, help="frames per second (1-60)")
    g.add_argument("--frames", type=_positive_int, help="exact frame count 1+4k; 1 makes an image")
    s = p.add_argument_group("sampling")
    s.add_argument("--steps", type=_positive_int, help="denoising steps")
    s.add_argument("--guidance", type=float, help="text guidance scale (1 = off)")
    s.add_argument("--image-guidance", type=float, help="guidance on the given image/frames (1 = off)")
    s.add_argument("--guidance-min-t", type=float, metavar="T",
                   help="guide only while the noise level t (1 -> 0) is at least T; faster, and less "
                        "flicker at 0.2 (default: the model's; 0 = every step)")
    s.add_argument("--context-t-floor", type=float, metavar="T",
                   help="long videos and extension: noise level of the generated frames each later window "
                        "continues (default: the model's)")
    s.add_argument("--context-guidance", type=float, metavar="G",
                   help="long videos: guidance on the frames each later window continues, the first frame "
                        "and the recent past (1 = off; default: the model's)")
    # No defaults here: an option left out is None, so `generate --from` can tell what was given,
    # and the request's own defaults apply (request_from_args).
    s.add_argument("--negative", help="negative prompt: what to steer away from")
    s.add_argument("--seed", type=int, help="random seed (default 0)")
    s.add_argument("--sampler", choices=["euler", "heun"], help="ODE solver (default euler)")
    s.add_argument("--batch", type=_positive_int, help="number of variations (seeds seed..seed+N-1; default 1)")
    m = p.add_argument_group("model")
    m.add_argument("--model", help="model directory (default: the shipped model in weights/)")
    m.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    m.add_argument("--dtype", default="auto", help="auto | fp32 | bf16 | fp16")
    m.add_argument("--offload", action="store_true", help="open models: keep parts on the CPU, one on the GPU at a time")
    m.add_argument("--vae-tiling", action="store_true", help="open models: decode in spatial tiles (less memory)")
    m.add_argument("--vae-slicing", action="store_true", help="open models: decode a batch one video at a time")
    m.add_argument("--compile", action="store_true", help="open models: torch.compile the denoiser")
    m.add_argument("--step-cache", type=int, default=0, metavar="N",
                   help="open models, for drafts: reuse the denoiser output for N steps after each call")
    p.add_argument("-o", "--output", default="out.mp4", help="output file: .mp4 .webm .gif .png .jpg")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def memory_options(args: argparse.Namespace) -> dict:
    """The --offload / --vae-tiling / --vae-slicing / --compile / --step-cache flags as `Pipeline.load` keywords."""
    options = {k: getattr(args, k, False) for k in ("offload", "vae_tiling", "vae_slicing", "compile")}
    step_cache = getattr(args, "step_cache", 0) or 0
    if not 0 <= step_cache <= 8:
        raise UserError(f"--step-cache {step_cache} is outside 0..8")
    return options | {"step_cache": step_cache}


def request_from_args(args: argparse.Namespace, **task_fields):
    from cinegen.pipeline import GenerateRequest

    options = dict(
        prompt=args.prompt, negative=args.negative, width=args.width, height=args.height, aspect=args.aspect,
        size=args.size, seconds=args.seconds, fps=args.fps, frames=args.frames, steps=args.steps,
        guidance=args.guidance, image_guidance=args.image_guidance, guidance_min_t=args.guidance_min_t,
        sampler=args.sampler, seed=args.seed, context_t_floor=args.context_t_floor,
        context_guidance=args.context_guidance, batch=args.batch,
    )
    # Options left out are None: the request's defaults (seed 0, one video, no negative) apply.
    return GenerateRequest(**{k: v for k, v in options.items() if v is not None}, **task_fields)


def request_options_given(args: argparse.Namespace) -> list[str]:
    """The command-line options that set a field of the request, i.e. change what is drawn (PROMPT,
    --seed, --image, ...), as written; left out, they are None (or False for --draft). The model
    options, -o and -q are not request fields."""
    from cinegen.pipeline import GenerateRequest

    names = [f.name for f in dataclasses.fields(GenerateRequest)]
    given = [name for name in names if getattr(args, name, None) is not None and getattr(args, name) is not False]
    return ["PROMPT" if name == "prompt" else "--" + name.replace("_", "-") for name in given]


def output_paths(output: str, batch: int) -> list[Path]:
    path = Path(output)
    if batch == 1:
        return [path]
    return [path.with_name(f"{path.stem}_{i}{path.suffix}") for i in range(batch)]


# The request fields that name input files.
INPUT_FIELDS = ("image", "last_image", "video", "video_b", "mask")


def input_digests(req) -> dict[str, str]:
    """The sha256 of each input file the request names, for its sidecar: a path says where a file was,
    not what it held, and `extend clip.mp4 -o clip.mp4` replaces its own source, after which
    `--from clip.json` extended the extended clip (issue 4: the same frames, or an error)."""
    import hashlib

    digests = {}
    for name in INPUT_FIELDS:
        path = getattr(req, name)
        if path is not None and Path(path).is_file():  # a missing one is refused by the run
            try:
                with open(path, "rb") as fp:
                    digests[name] = hashlib.file_digest(fp, "sha256").hexdigest()
            except OSError as e:  # read before the run does (--from, finalize): a file this user may not read
                raise UserError(f"input file {path!r} is not readable ({e.strerror or type(e).__name__})") from None
    return digests


def check_recorded_inputs(record_path: str, req, recorded) -> dict[str, str]:
    """A one-line error, before the model loads, if an input of the recorded request is missing or is
    not the file the record was made from (older records keep no digests: their files are not checked).
    Returns the inputs' digests (`input_digests`), for the new output's sidecar."""
    current = input_digests(req)
    for name in INPUT_FIELDS:
        path = getattr(req, name)
        if not path:  # as the pipeline reads it: `--image ""` (a script's unset variable) names no file
            continue
        flag = "--" + name.replace("_", "-")
        if not Path(path).is_file():
            raise UserError(f"{record_path!r} was made from {flag} {path!r}, which does not exist here (its paths "
                            "are as given to the command: run this in the folder it ran in)")
        digest = recorded.get(name) if isinstance(recorded, dict) else None
        if digest is not None and digest != current[name]:
            raise UserError(f"{flag} {path!r} is not the file {record_path!r} was made from (its sha256 differs: "
                            "it changed since, and the output would too); put that file back, or make a new output")


class Terminated(BaseException):
    """SIGTERM as an exception (a BaseException, like KeyboardInterrupt, so no `except Exception`
    stops it): the writers remove their temporary files as they do on Ctrl-C."""


@contextlib.contextmanager
def sigterm_raises():
    """Within the block (or the function it decorates) SIGTERM raises `Terminated`: by default it ends
    the process on the spot, which left the hidden `.out.*.mp4` of a write in progress. Only the
    commands that write outputs ask for it: `cinegen serve` and its workers keep their own handling
    (a worker hands its job back). The handler before comes back after."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread has handlers
        yield
        return

    def terminate(signum, frame):
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


@contextlib.contextmanager
def writing(path: Path):
    """The file system's refusal to write `path` as a one-line error: check_output_path cannot foresee
    every one (a folder named out.mp4, /proc for root, a full disk), and the writers leave no partial file."""
    try:
        yield
    except OSError as e:
        raise UserError(f"cannot write {str(path)!r}: {e.strerror or e}") from None


@sigterm_raises()
def run_request(args: argparse.Namespace, req, draft_state: dict | None = None,
                digests: dict[str, str] | None = None) -> int:
    """Validate, generate, and write every output with its JSON sidecar.

    Each variation of a batch runs alone, as the request its sidecar records (seed + i, batch 1):
    sampled together, the denoiser's matrix products rounded differently from a run of one (a few
    1e-6 in the velocity of the shipped model on a CPU, up to 6 levels in the mp4), so
    `--from out_1.json` (issue 4) did not give out_1's frames, nor did `--seed` of its seed.
    `draft_state`: the recorded draft's (`--from draft.json`): its request runs as it ran, and its
    latent is written again, so the new draft can be finalized. `digests`: the inputs' sha256 where
    the caller has them already (`check_recorded_inputs`)."""
    from cinegen.media import check_output_path, write_sidecar, write_video
    from cinegen.pipeline import Pipeline

    paths = output_paths(args.output, req.batch)
    for path in paths:
        check_output_path(path)
    pipe = Pipeline.load(args.model, device=args.device, dtype=args.dtype, **memory_options(args))
    pipe.validate(req)  # fail on bad settings before any slow work
    if req.draft or draft_state is not None:
        from cinegen.tasks_cli import write_draft_state
    if digests is None:  # before any output is written: an output may replace an input
        digests = input_digests(req)
    told: set[str] = set()
    results = []
    for i in range(len(paths)):
        one = dataclasses.replace(req, seed=req.seed + i, batch=1)
        if one.draft:
            result = pipe.draft(one, show_progress=not args.quiet)
        else:
            result = pipe.run(one, show_progress=not args.quiet)
        if draft_state is not None:
            result.metadata["draft"] = {name: value for name, value in draft_state.items() if name != "latent"}
        for note in result.metadata.get("notes", []):
            if note not in told:  # each variation reads the same inputs: say it once
                print(f"cinegen: note: {note}", file=sys.stderr)
                told.add(note)
        results.append(result)
    # Written only once every variation is made: each reads the inputs again, and an output may be one
    # of them (`extend clip_0.mp4 --batch 2 -o clip.mp4` writes clip_0.mp4), which a later variation
    # then extended instead of the clip given.
    for path, result in zip(paths, results, strict=True):
        record = dict(result.metadata)
        if digests:
            record["inputs_sha256"] = digests
        with writing(path):
            if "draft" in record:  # the draft's state: its latent beside it, named in the sidecar (cinegen finalize)
                record["draft"] = dict(record["draft"])
                write_draft_state(path, record, result.latents[:1])
            written = write_video(path, result.frames, result.fps, record)  # frames to .png: the first's file
            write_sidecar(path, record)
        print(written)
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from cinegen.pipeline import GenerateRequest

    if args.from_record:
        given = request_options_given(args)
        if given:
            raise UserError(
                f"--from {args.from_record!r} makes the recorded request again; leave out {', '.join(given)} "
                "(with --from give only -o, -q and the model options such as --model, --device, --dtype)"
            )
        record_path = Path(args.from_record)
        if not record_path.is_file():
            raise UserError(f"record {args.from_record!r} does not exist")
        try:
            record = json.loads(record_path.read_text())
            request = record["request"]
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, KeyError, TypeError):
            # RecursionError: JSON nested too deep to parse.
            raise UserError(f"{args.from_record!r} is not a cinegen JSON sidecar") from None
        req = GenerateRequest.from_dict(request)
        digests = check_recorded_inputs(args.from_record, req, record.get("inputs_sha256"))
        if "finalized_from_draft" in record:  # made by `cinegen finalize`: its draft, then the finalize, again
            from cinegen.tasks_cli import finalize_again

            return finalize_again(args, req, record["finalized_from_draft"], digests)
        draft_state = record.get("draft")
        if draft_state is not None and not isinstance(draft_state, dict):
            raise UserError(f"{args.from_record!r} has draft {draft_state!r}; it must be the draft's state (an object)")
        return run_request(args, req, draft_state, digests)
    extra = {"image": args.image, "last_image": args.last_image, "draft": args.draft}
    if args.storyboard:
        from cinegen.inputs import read_storyboard

        # The shots give the prompts and lengths; these would be ignored (the sidecar recorded them).
        given = [name for name, value in (("PROMPT", args.prompt), ("--seconds", args.seconds),
                                          ("--frames", args.frames)) if value is not None]
        if given:
            raise UserError(f"--storyboard gives each shot's prompt and seconds; leave out {', '.join(given)}")
        extra["storyboard"] = [vars(shot) for shot in read_storyboard(args.storyboard)]
        args.prompt = args.prompt or ""
    if args.prompt is None:
        raise UserError("give a PROMPT (or --from out.json)")
    image_output = Path(args.output).suffix.lower() in (".png", ".jpg", ".jpeg")
    if image_output and args.frames is None and args.seconds is None and not args.storyboard:
        args.frames = 1  # an image output means text -> image (a storyboard's shots give its length: numbered frames)
    return run_request(args, request_from_args(args, **extra))


def cmd_train(args: argparse.Namespace) -> int:
    from cinegen.config import TrainConfig
    from cinegen.train import export, train

    training_only = {
        "--data": args.data, "--steps": args.steps, "--max-steps": args.max_steps, "--minutes": args.minutes,
        "--accumulate": args.accumulate, "--parallel": args.parallel, "--cooldown": args.cooldown,
        "--context-noise": args.context_noise, "--threads": args.threads,
    }
    if args.export:
        given = [name for name, value in training_only.items() if value is not None]
        if given:
            raise UserError(f"--export writes a model directory from a run and trains nothing; leave out {', '.join(given)}")
        if not (args.run or args.out_dir or args.config):
            raise UserError("--export needs the run: --run RUN_DIR, or --config CONFIG.toml for its out_dir")
        # --out-dir names the run as it does when training; the config's out_dir was taken before.
        export(args.run or args.out_dir or TrainConfig.load(args.config).out_dir, args.export, args.autoencoder)
        print(args.export)
        return 0
    if args.run or args.autoencoder:
        raise UserError("--run and --autoencoder only go with --export DIR")
    if not args.config:
        raise UserError("give --config CONFIG.toml (see configs/)")
    cfg = TrainConfig.load(args.config)
    overrides = {"steps": args.steps, "accumulate": args.accumulate, "parallel": args.parallel, "out_dir": args.out_dir,
                 "threads": args.threads, "cooldown": args.cooldown, "context_noise": args.context_noise}
    for key, value in overrides.items():
        if value is not None:
            setattr(cfg, key, value)
    if args.data:
        cfg.data.source = args.data
    train(cfg, max_steps=args.max_steps, minutes=args.minutes)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cinegen", description="Open video generation on one spacetime canvas.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    gen = sub.add_parser("generate", help="text (+ image) to video or image",
                         description="Generate a video (or an image with -o x.png / --frames 1) from a prompt.")
    gen.add_argument("prompt", nargs="?", help="what the video shows")
    gen.add_argument("--from", dest="from_record", metavar="JSON",
                     help="reproduce an output from its JSON sidecar (the input files it names must be as they "
                          "were; a draft's is a draft again, a finalize's makes its draft and the finalize again)")
    gen.add_argument("--image", help="first frame: image -> video (transparent pixels are taken as black)")
    gen.add_argument("--last-image", help="last frame the video should end on (transparent pixels: black)")
    gen.add_argument("--storyboard", metavar="JSON", help='shots with cuts: [{"prompt": "...", "seconds": 3}, ...]')
    gen.add_argument("--draft", action="store_true",
                     help="a quick draft (half size, but never below the smallest size the default model trained on) and its state; render it with `cinegen finalize out.json`")
    add_generation_options(gen)
    gen.set_defaults(func=cmd_generate)

    tr = sub.add_parser("train", help="train the VAE or the denoiser (single process or torchrun)")
    tr.add_argument("--config", help="training config (TOML or JSON), e.g. configs/tiny.toml")
    tr.add_argument("--data", help="folder with manifest.jsonl of captioned videos instead of the world")
    tr.add_argument("--steps", type=_positive_int, help="total steps (overrides the config)")
    tr.add_argument("--max-steps", type=_positive_int, help="stop after this many more steps")
    tr.add_argument("--minutes", type=_positive_float,
                    help="stop after this many minutes of wall time, with a checkpoint (and export) as at the end")
    tr.add_argument("--accumulate", type=_positive_int, metavar="N",
                    help="micro-batches per optimizer step, gradients averaged (overrides the config)")
    tr.add_argument("--parallel", help="under torchrun: ddp (a whole model per rank) or fsdp (FSDP2: weights, "
                    "gradients and optimizer state sharded across ranks) (overrides the config)")
    tr.add_argument("--out-dir", help="run directory (overrides the config)")
    tr.add_argument("--cooldown", type=float, metavar="SHARE",
                    help="let the learning rate fall linearly to 0 over this last share (0-1) of the run (overrides the config)")
    tr.add_argument("--context-noise", type=float, metavar="T",
                    help="denoiser: noise the known frames of half the canvas clips to a level up to T (overrides the config)")
    tr.add_argument("--threads", type=_positive_int, help="CPU threads")
    tr.add_argument("--export", metavar="DIR", help="write a model directory from a run's EMA weights and exit")
    tr.add_argument("--run", help="run or model directory for --export (default: --out-dir, or the config's out_dir)")
    tr.add_argument("--autoencoder", help="for --export: take the VAE from this run instead of the config's")
    tr.set_defaults(func=cmd_train)

    for module in ("cinegen.tasks_cli", "cinegen.world.cli", "cinegen.evaluate_cli", "cinegen.serve.cli",
                   "cinegen.backends.cli"):
        try:
            mod = __import__(module, fromlist=["add_commands"])
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        mod.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        print(f"cinegen: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cinegen: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("cinegen: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM


if __name__ == "__main__":
    sys.exit(main())
