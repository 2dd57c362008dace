"""Issue 5 bars for every canvas task, on held-out world captions; one JSON line per result.

    nice -n 19 env OMP_NUM_THREADS=1 python benchmarks/tasks.py --model weights --clips 3 [--long] [--events]

Source clips are rendered by the world renderer at the model's default size, so every number
compares the model's output against exact ground truth (see WORLD.md, cinegen/evaluate.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from quality import HELDOUT, mean_of

from cinegen.data import read_captions
from cinegen.evaluate import evaluate_clip
from cinegen.media import write_video
from cinegen.pipeline import GenerateRequest, Pipeline
from cinegen.world import parse_caption, render
from cinegen.world.captions import write_caption
from cinegen.world.detect import detect
from cinegen.world.scene import Background, Scene

# The parts of a caption that adherence needs all right at once.
ADHERENCE_PARTS = ("color_right", "shape_right", "size_right", "motion_right", "background_right")


def adherence_parts(metrics: dict) -> dict:
    return {k: metrics.get(k) for k in ADHERENCE_PARTS}

# Held-out scenes with events (8 trails, 8 eaten dots, 8 walls), none in a training pool
# (`DataConfig.heldout_events`).
EVENT_CAPTIONS = Path(__file__).with_name("heldout_event_captions.txt")
# What an event clip reports: events_right says the event the caption names happened (a trail of
# its color, its dots eaten, hidden behind the wall); the next four whether what happened lasts.
EVENT_KEYS = ("events_right", "reappeared", "identity_kept", "trail_persistence", "dots_stay_gone", "adherence")


def emit(row: dict) -> None:
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)


def colors(frames: np.ndarray, fps: float) -> set[str]:
    return {t.color for t in detect(frames, fps).tracks}


class Bench:
    def __init__(self, pipe: Pipeline, folder: Path, seed: int, **request_fields):
        self.pipe, self.folder, self.seed = pipe, folder, seed
        self.request_fields = request_fields  # for every request, e.g. image_guidance
        d = pipe.defaults
        self.w, self.h, self.fps = d.width, d.height, d.fps

    def source(self, caption: str, seed: int, seconds: float = 2.125, name: str = "src.mp4"):
        """A rendered clip of 1 + 4k frames (17 at 8 fps), written as mp4 as a user would give it."""
        clip = render(
            parse_caption(caption), width=self.w, height=self.h, fps=self.fps, seconds=seconds, seed=seed
        )
        path = self.folder / name
        write_video(path, clip.frames, self.fps)
        return clip, path

    def run(self, **fields) -> tuple[np.ndarray, float]:
        req = GenerateRequest(**({"seed": self.seed} | self.request_fields | fields))
        started = time.perf_counter()
        frames = self.pipe.run(req).frames
        return frames, time.perf_counter() - started

    def image2video(self, caption: str, i: int) -> dict:
        clip, _ = self.source(caption, i)
        image = self.folder / "first.png"
        write_video(image, clip.frames[0], self.fps)
        frames, secs = self.run(prompt=caption, image=str(image), seconds=2)
        m = evaluate_clip(frames, self.fps, caption, task="image2video", reference=clip.frames[0])
        return {"first_frame_psnr": m["first_frame_psnr"], "adherence": m["adherence"], "parts": adherence_parts(m),
                "seconds": secs}

    def extend(self, caption: str, i: int, backward: bool) -> dict:
        clip, path = self.source(caption, i)
        frames, secs = self.run(prompt=caption, task="extend", video=str(path), seconds=2, backward=backward)
        given = len(clip.frames)
        m = evaluate_clip(
            frames, self.fps, caption, task="extend_backward" if backward else "extend", reference=clip.frames
        )
        joint = len(frames) - given if backward else given
        before, after = (frames[joint:], frames[:joint]) if backward else (frames[:joint], frames[joint:])
        kept = colors(before, self.fps)
        found = colors(after, self.fps)
        return {
            "joint_discontinuity": m.get("joint_discontinuity"),
            "given_frames_psnr": m["given_frames_psnr"],
            "objects_kept": (len(kept & found) / len(kept)) if kept else None,
            "adherence": m["adherence"],
            "parts": adherence_parts(m),
            "seconds": secs,
        }

    def connect(self, caption: str, i: int, sources: str) -> dict:
        """A 1 s transition (7 frames at 8 fps) between two 17-frame clips of the caption.

        "gap": A and B are the start and the end of one rendered clip, 7 frames apart, so a true
        transition exists (the world's own frames). "independent": two renders with other seeds,
        so objects stand elsewhere in B; a still caption then needs motion where A and B have none,
        and any motion at a joint reads large against their ~0 frame change.
        """
        scene = parse_caption(caption)
        if sources == "gap":
            clip = render(scene, width=self.w, height=self.h, fps=self.fps, num_frames=41, seed=i).frames
            a, b = clip[:17], clip[24:]
        else:
            a, b = (render(scene, width=self.w, height=self.h, fps=self.fps, num_frames=17, seed=s).frames
                    for s in (i, i + 100))
        pa, pb = self.folder / "a.mp4", self.folder / "b.mp4"
        write_video(pa, a, self.fps)
        write_video(pb, b, self.fps)
        frames, secs = self.run(prompt=caption, task="connect", video=str(pa), video_b=str(pb), seconds=1)
        m = evaluate_clip(frames, self.fps, caption, task="connect", reference=a, reference_b=b)
        return {"sources": sources, "joint_discontinuity": m.get("joint_discontinuity"), "seconds": secs}

    def loop(self, caption: str, i: int, video: bool) -> dict:
        if video:
            _, path = self.source(caption, i)
            frames, secs = self.run(prompt=caption, task="loop", video=str(path))
        else:
            frames, secs = self.run(prompt=caption, task="loop", seconds=2)
        m = evaluate_clip(frames, self.fps, caption, task="loop")
        return {"seam_ratio": m["seam_ratio"], "adherence": m["adherence"], "parts": adherence_parts(m), "seconds": secs}

    def mask_edit(self, caption: str, i: int) -> dict:
        """Keep the subject, turn the background to another tone (white <-> black)."""
        scene = parse_caption(caption)
        source_tone = "white" if scene.background.tone != "white" else "black"
        target_tone = "black" if source_tone == "white" else "white"
        src_scene = dataclasses.replace(scene, background=Background(source_tone, "plain"))
        clip = render(src_scene, width=self.w, height=self.h, fps=self.fps, seconds=2.125, seed=i)
        path = self.folder / "src.mp4"
        write_video(path, clip.frames, self.fps)
        subject = np.stack(
            [np.any([o.mask for o in t.objects if o.mask is not None], axis=0) for t in clip.truth]
        )
        # White = regenerate: the background, a few pixels away from the subject (mp4 edges blur).
        from scipy import ndimage

        grown = np.stack([ndimage.binary_dilation(s, iterations=3) for s in subject])
        mask = np.repeat((~grown)[..., None] * 255, 3, axis=-1).astype(np.uint8)
        mask_path = self.folder / "mask.mp4"
        write_video(mask_path, mask, self.fps)
        prompt = caption_with_tone(caption, target_tone)
        frames, secs = self.run(prompt=prompt, task="edit", video=str(path), mask=str(mask_path))
        from cinegen.media import read_video

        given = read_video(path)[0]
        outside = ~np.repeat((read_video(mask_path)[0].mean(-1) >= 128)[..., None], 3, -1)
        tone = detect(frames, self.fps).tone
        return {
            "outside_psnr": psnr(frames[outside], given[outside]),
            "tone_right": float(tone == target_tone),
            "target_tone": target_tone,
            "seconds": secs,
        }

    def storyboard(self, caption: str, i: int) -> dict:
        """Two 2 s shots with a cut: the caption, then the same object doing something else on
        another background (`second_shot`). Scores each shot against its prompt and whether the
        main object keeps its color, shape and size class, and its radius, across the cut; the
        same for the world's own two clips (the measure's ceiling) and for the second shot made
        by a separate run with another seed (what the storyboard's shared seed adds)."""
        second = second_shot(caption, i)
        frames, secs = self.run(prompt="", storyboard=[{"prompt": caption, "seconds": 2},
                                                       {"prompt": second, "seconds": 2}])
        cut = len(frames) // 2
        shot_a, shot_b = frames[:cut], frames[cut:]
        other_seed, _ = self.run(prompt=second, seconds=2, seed=self.seed + 1000)
        world_a, world_b = (render(parse_caption(c), width=self.w, height=self.h, fps=self.fps, num_frames=cut,
                                   seed=i).frames for c in (caption, second))
        return {
            "second_prompt": second,
            "adherence_first_shot": evaluate_clip(shot_a, self.fps, caption)["adherence"],
            "adherence_second_shot": evaluate_clip(shot_b, self.fps, second)["adherence"],
            "storyboard": look_kept(shot_a, shot_b, self.fps),
            "separate_seed": look_kept(shot_a, other_seed, self.fps),
            "world": look_kept(world_a, world_b, self.fps),
            "seconds": secs,
        }

    def world_keeps(self, caption: str, seconds: float) -> bool:
        """Whether the world's own clip of this length matches its caption in its first and last
        10 s, so that the model can be asked to keep it for that long. Those windows are scored
        by `evaluate.window_adherence`, at any phase of a motion that repeats."""
        clip = render(parse_caption(caption), width=self.w, height=self.h, fps=self.fps, seconds=seconds)
        m = evaluate_clip(clip.frames, self.fps, caption, task="long")
        return m.get("adherence_first10s") == 1.0 and m.get("adherence_last10s") == 1.0

    def long(self, caption: str, seconds: float, keep: Path | None = None) -> dict:
        frames, secs = self.run(prompt=caption, seconds=seconds)
        if keep is not None:
            write_video(keep, frames, self.fps)
        m = evaluate_clip(frames, self.fps, caption, task="long")
        keys = ("adherence_first10s", "adherence_last10s", "drift", "first10s", "last10s")
        return {k: m.get(k) for k in keys} | {"seconds": secs}

    def events(self, caption: str) -> dict:
        frames, secs = self.run(prompt=caption, seconds=4)
        m = evaluate_clip(frames, self.fps, caption)
        return {k: m.get(k) for k in EVENT_KEYS} | {"parts": adherence_parts(m), "seconds": secs}


def events_summary(rows: list[dict]) -> dict:
    """Each of EVENT_KEYS' mean over the rows that have it, and how many do."""
    summary = {}
    for key in EVENT_KEYS:
        summary[key] = mean_of(rows, key)
        summary[f"{key}_clips"] = sum(r.get(key) is not None for r in rows)
    return summary


def guarded(fn, *args) -> dict:
    """A crash in one clip (e.g. the detector on noise) is a row with its error, not a lost run."""
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001
        return {"error": f"{type(e).__name__}: {e}"[:200]}


def second_shot(caption: str, i: int) -> str:
    """The caption's first object with another motion, on a plain background of another tone."""
    scene = parse_caption(caption)
    obj = scene.objects[0]
    motions = [m for m in ("right", "left", "still", "bounces", "grows") if m != obj.motion]
    tones = [t for t in ("white", "black", "gray") if t != scene.background.tone]
    shot = Scene((dataclasses.replace(obj, motion=motions[i % len(motions)]),),
                 Background(tones[i % len(tones)], "plain"))
    return write_caption(shot, np.random.default_rng(i))


def main_track(frames: np.ndarray, fps: float):
    tracks = detect(frames, fps).tracks
    return max(tracks, key=lambda t: len(t.frames)) if tracks else None


def look_kept(a: np.ndarray, b: np.ndarray, fps: float) -> dict:
    """Whether the main object of clip b looks as in clip a: color, shape and size class, and b's
    radius at first sight over a's."""
    ta, tb = main_track(a, fps), main_track(b, fps)
    if ta is None or tb is None:
        return {"found": False}
    kept = {f"{k}_kept": getattr(ta, k) == getattr(tb, k) for k in ("color", "shape", "size")}
    return {"found": True, **kept, "look_kept": all(kept.values()),
            "radius_ratio": tb.radius / ta.radius if ta.radius else None}


def storyboard_summary(rows: list[dict]) -> dict:
    """Share of clips whose object kept each part of its look across the cut, and the mean size
    change (|log radius ratio|), for the storyboard, the separately seeded shot and the world."""
    summary: dict = {"task": "storyboard_summary", "clips": len(rows)}
    for key in ("adherence_first_shot", "adherence_second_shot"):
        summary[key] = mean_of(rows, key)
    for source in ("storyboard", "separate_seed", "world"):
        found = [r[source] for r in rows if r.get(source, {}).get("found")]
        summary[f"{source}_found"] = len(found)
        for key in ("look_kept", "color_kept", "shape_kept", "size_kept"):
            summary[f"{source}_{key}"] = mean_of(found, key)
        ratios = [abs(math.log(f["radius_ratio"])) for f in found if f.get("radius_ratio")]
        summary[f"{source}_abs_log_radius_ratio"] = float(np.mean(ratios)) if ratios else None
    return summary


def caption_with_tone(caption: str, tone: str) -> str:
    scene = parse_caption(caption)
    obj = scene.objects[0]
    words = " ".join(w for w in (obj.size, obj.color, obj.shape) if w)
    motion = {"stays still": "stays still"}.get(obj.motion or "", obj.motion or "stays still")
    return f"a {words} {motion} on a plain {tone} background"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=None)
    ap.add_argument("--clips", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--tasks",
        default="image2video,extend,extend_backward,connect,connect_independent,loop,loop_video,mask_edit",
    )
    ap.add_argument(
        "--long", type=float, default=0.0, help="also a long video of this many seconds (60 for the bar)"
    )
    ap.add_argument(
        "--long-clips",
        type=int,
        default=1,
        help="how many captions get a long video: the first held-out ones whose world clip of that "
        "length keeps its caption in the first and last 10 s",
    )
    ap.add_argument("--long-skip", type=int, default=0,
                    help="skip this many of those captions first (to finish an interrupted run; rows are deterministic)")
    ap.add_argument("--keep-long", type=Path, default=None, help="write each long video here (NN.mp4, in caption order)")
    ap.add_argument("--events", action="store_true", help="also occlusion / trail / eating captions")
    ap.add_argument("--event-clips", type=int, default=24, help="how many of heldout_event_captions.txt (24)")
    ap.add_argument("--context-t-floor", type=float, default=None,
                    help="noise level of generated context frames in later windows (default: the model's)")
    ap.add_argument("--image-guidance", type=float, default=None, help="guidance on the given frames (default 1)")
    ap.add_argument("--context-guidance", type=float, default=None,
                    help="guidance on what a long video's later windows know (default: the model's)")
    ap.add_argument("--guidance", type=float, default=None, help="guidance on the prompt (default: the model's)")
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    ap.add_argument("--sampler", default=None, help="euler or heun (default: the model's)")
    ap.add_argument("--captions-file", type=Path, default=HELDOUT,
                    help="captions to use instead of the held-out ones, e.g. training captions for choosing settings")
    args = ap.parse_args()
    torch.set_num_threads(1)
    pipe = Pipeline.load(args.model, device="cpu")
    all_captions = read_captions(args.captions_file)
    captions = all_captions[: args.clips]
    if args.keep_long:
        args.keep_long.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(pipe, Path(tmp), args.seed, context_t_floor=args.context_t_floor,
                      image_guidance=args.image_guidance, guidance=args.guidance,
                      context_guidance=args.context_guidance, steps=args.steps, sampler=args.sampler)
        task_rows: dict[str, list[dict]] = {}
        for task in filter(None, args.tasks.split(",")):
            for i, caption in enumerate(captions):
                fn = {
                    "image2video": lambda c, i: bench.image2video(c, i),
                    "extend": lambda c, i: bench.extend(c, i, False),
                    "extend_backward": lambda c, i: bench.extend(c, i, True),
                    "connect": lambda c, i: bench.connect(c, i, "gap"),
                    "connect_independent": lambda c, i: bench.connect(c, i, "independent"),
                    "loop": lambda c, i: bench.loop(c, i, False),
                    "loop_video": lambda c, i: bench.loop(c, i, True),
                    "mask_edit": bench.mask_edit,
                    "storyboard": bench.storyboard,
                }[task]
                row = {"task": task, "caption": caption} | guarded(fn, caption, i)
                emit(row)
                task_rows.setdefault(task, []).append(row)
        if "storyboard" in task_rows:
            emit(storyboard_summary(task_rows["storyboard"]))
        if args.long:
            long_rows, skipped = [], 0
            for caption in all_captions:
                if len(long_rows) + skipped == args.long_clips:
                    break
                if not bench.world_keeps(caption, args.long):
                    continue
                if skipped < args.long_skip:
                    skipped += 1
                    continue
                keep = args.keep_long / f"{skipped + len(long_rows):02d}.mp4" if args.keep_long else None
                row = {"task": "long", "caption": caption, "duration": args.long} | guarded(
                    bench.long, caption, args.long, keep
                )
                emit(row)
                long_rows.append(row)
            rows = [r for r in long_rows if r.get("first10s") and r.get("last10s")]
            if rows:
                summary = {"task": "long_summary", "clips": len(rows), "context_t_floor": args.context_t_floor,
                           "context_guidance": args.context_guidance}
                for key in ("adherence", *ADHERENCE_PARTS):
                    for window in ("first10s", "last10s"):
                        vals = [r[window][key] for r in rows if r[window].get(key) is not None]
                        summary[f"{key}_{window}"] = float(np.mean(vals)) if vals else None
                first, last = summary["adherence_first10s"], summary["adherence_last10s"]
                summary["last_over_first"] = last / first if first else None
                emit(summary)
        if args.events:
            event_rows = []
            for caption in read_captions(EVENT_CAPTIONS)[: args.event_clips]:
                row = {"task": "events", "caption": caption} | guarded(bench.events, caption)
                emit(row)
                event_rows.append(row)
            emit({"task": "events_summary", "clips": len(event_rows)} | events_summary(event_rows))


if __name__ == "__main__":
    main()
