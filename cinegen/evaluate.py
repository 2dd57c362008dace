"""Metrics for one clip or a folder (WORLD.md): prompt adherence, temporal consistency, tasks.

Adherence is strict by design: each requested object scores the product of its checks
(color, shape, size, motion, events), the clip scores the mean over objects times the
product of the scene checks (background, camera). So one wrong attribute of a one-object
prompt gives 0, and a prompt is only "adhered to" when everything it asks for is there; the
per-part `*_right` fields show which part failed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from cinegen.errors import UserError
from cinegen.world.captions import parse_caption
from cinegen.world.detect import MOTION_WINDOW, Detection, Track, detect
from cinegen.world.scene import ObjectSpec, Scene

TASKS = ("image2video", "extend", "extend_backward", "loop", "connect", "long", "draft")
PARTS = ("color", "shape", "size", "motion", "background", "camera", "events")


def _object_checks(spec: ObjectSpec, tr: Track | None, wall_seen: bool) -> dict[str, float | None]:
    """Per attribute: 1 right, 0 wrong, None when the prompt does not ask. `wall_seen`: whether
    the clip shows a wall at all; an object that flickers out in front of no wall has not passed
    behind one."""

    def check(asked, got) -> float | None:
        if asked is None:
            return None
        return float(tr is not None and asked == got)

    motion = spec.motion
    if motion == "spins" and spec.shape == "circle":
        motion = None  # a spinning circle looks still: nothing to judge
    checks = {
        "color": check(spec.color, tr.color if tr else None),
        "shape": check(spec.shape, tr.shape if tr else None),
        "size": check(spec.size, tr.size if tr else None),
        "motion": None,
        "events": None,
    }
    if motion is not None and (tr is None or tr.motion is not None):
        checks["motion"] = check(motion, tr.motion if tr else None)
    events = []
    if spec.trail:
        events.append(tr is not None and tr.trail == spec.trail)
    if spec.eats:
        events.append(tr is not None and tr.eats == spec.eats)
    if spec.turns:
        events.append(tr is not None and tr.final_color == spec.turns and tr.color_change_time is not None)
    if spec.behind_wall:
        events.append(wall_seen and tr is not None and tr.hidden)
    if events:
        checks["events"] = float(all(events))
    return checks


def _match(scene: Scene, det: Detection) -> list[Track | None]:
    """Assign detected tracks to prompt objects maximising agreement (color counts most)."""
    tracks = det.tracks
    if not tracks:
        return [None] * len(scene.objects)
    score = np.zeros((len(scene.objects), len(tracks)))
    for i, spec in enumerate(scene.objects):
        for j, tr in enumerate(tracks):
            c = _object_checks(spec, tr, det.wall)
            score[i, j] = (
                4 * (c["color"] or 0)
                + sum(v or 0 for k, v in c.items() if k != "color")
                + 0.01 * len(tr.frames)
            )
    rows, cols = linear_sum_assignment(-score)
    out: list[Track | None] = [None] * len(scene.objects)
    for i, j in zip(rows, cols):
        out[i] = tracks[j]
    return out


def _checked(scene: Scene, det: Detection) -> tuple[list[Track | None], list[dict]]:
    """Each prompt object's track and its per-attribute checks."""
    matched = _match(scene, det)
    return matched, [_object_checks(s, t, det.wall) for s, t in zip(scene.objects, matched)]


def adherence(scene: Scene, det: Detection) -> dict:
    return _score(scene, det, *_checked(scene, det))


def _score(scene: Scene, det: Detection, matched: list[Track | None], per_object: list[dict]) -> dict:
    out: dict = {}
    for part in ("color", "shape", "size", "motion", "events"):
        vals = [c[part] for c in per_object if c[part] is not None]
        out[f"{part}_right"] = float(np.mean(vals)) if vals else None
    bg = scene.background
    bg_checks = []
    if bg.tone is not None:
        bg_checks.append(bg.tone == det.tone)
    bg_checks.append(bg.pattern == det.pattern)
    out["background_right"] = float(all(bg_checks))
    # Judged when the prompt names a camera motion and the clip has frames to show it.
    out["camera_right"] = float(scene.camera == det.camera) if scene.camera and det.num_frames > 1 else None
    object_scores = [math.prod(v for v in c.values() if v is not None) for c in per_object]
    scene_score = math.prod(v for v in (out["background_right"], out["camera_right"]) if v is not None)
    out["objects_found"] = float(
        np.mean([c["color"] != 0.0 and t is not None for c, t in zip(per_object, matched)])
    )
    out["adherence"] = float(np.mean(object_scores)) * scene_score
    return out


def window_adherence(scene: Scene, frames: np.ndarray, fps: float) -> dict:
    """Adherence of a window from the middle of a long video (its first or last 10 s).

    WORLD.md promises an object's stated motion for the first 2 s only; after that growth
    ping-pongs, bounces recur and movers bounce off the edges, so a window taken later starts at
    any phase of the motion, and a growing object's size at the window's start is any size on
    its way. Judged at the window's start, as `adherence` does, the 10 s windows of a rendered
    world minute (one starting every 1.5 s, at 128 px) are right for a fifth to two fifths of the
    travelling, growing or shrinking objects and half of the bouncing ones (those that start on
    the floor fail). Here an object's motion and size count as right when some 2 s span of the
    window (one starting every half second) shows both, as the start of a world clip does; then
    every such window of the world is right. The rest is judged on the whole window."""
    det = detect(frames, fps)
    matched, per_object = _checked(scene, det)
    # The phased parts each object asks for (checked against no track, every asked part is 0).
    asked = [[p for p in ("motion", "size") if _object_checks(s, None, False)[p] is not None] for s in scene.objects]
    pending = {i for i, c in enumerate(per_object) if any(c[p] != 1.0 for p in asked[i])}
    span, stride = int(round(MOTION_WINDOW * fps)) + 1, max(1, int(round(fps / 2)))
    for start in range(0, len(frames) - span + 1, stride):
        if not pending:
            break
        for i, checks in enumerate(_checked(scene, detect(frames[start : start + span], fps))[1]):
            if i not in pending:
                continue
            if all(checks[p] == 1.0 for p in asked[i]):
                per_object[i].update(dict.fromkeys(asked[i], 1.0))
                pending.discard(i)
            # A motion the whole window could not judge (its track too short at the start)
            # is judged wrong once a span judges it wrong, unless another span shows it right.
            for p in asked[i]:
                if per_object[i][p] is None and checks[p] is not None:
                    per_object[i][p] = 0.0
    return _score(scene, det, matched, per_object)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)


# The smallest typical frame change a seam or joint is measured against: one gray level RMS.
# A still scene changes by ~0 between frames, and any joint divided by ~0 is meaningless
# (a static "rests" clip once read 8 million); below one level no one sees a change.
VISIBLE_CHANGE = 1.0


def _changes(frames: np.ndarray) -> np.ndarray:
    """RMS change between consecutive frames, [T-1]."""
    f = frames.astype(np.float32)
    return np.sqrt(((f[1:] - f[:-1]) ** 2).mean(axis=(1, 2, 3)))


def _rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(((a.astype(np.float32) - b.astype(np.float32)) ** 2).mean()))


def flicker(frames: np.ndarray, det: Detection) -> float | None:
    """Mean absolute frame-to-frame change (0–255) on static background pixels: pixels that
    are neutral in both frames; None under camera motion, where nothing is static."""
    if len(frames) < 2 or det.camera is not None:
        return None
    from cinegen.world.detect import classify, downscale

    labels, gray = det.labels, det.gray
    if labels is None or gray is None or len(labels) != len(frames):
        labels, gray = classify(downscale(frames)[0])
    neutral = labels < 0
    static = neutral[1:] & neutral[:-1]
    if not static.any():
        return None
    return float(np.abs(gray[1:] - gray[:-1])[static].mean())


def check_task(task: str, has_reference: bool) -> None:
    """A known task, with the reference it needs (checked before any clip is read)."""
    if task not in TASKS:
        raise UserError(f"unknown task {task!r}; allowed: {', '.join(TASKS)}")
    if task in {"image2video", "extend", "extend_backward", "draft"} and not has_reference:
        raise UserError(f"task {task!r} needs --reference")


def task_metrics(
    frames: np.ndarray,
    fps: float,
    task: str,
    reference: np.ndarray | None,
    reference_b: np.ndarray | None = None,
    joints: list[int] | None = None,
    scene: Scene | None = None,
) -> dict:
    check_task(task, reference is not None)
    out: dict = {}
    if reference is not None and reference.ndim == 3:
        reference = reference[None]
    if reference is not None and task != "draft" and reference.shape[1:] != frames.shape[1:]:
        raise UserError(
            f"reference is {reference.shape[2]}x{reference.shape[1]}, clip is {frames.shape[2]}x{frames.shape[1]}; "
            f"task {task!r} needs a reference of the clip's size"
        )
    if task == "image2video":
        out["first_frame_psnr"] = _psnr(frames[0], reference[0])
    elif task in ("extend", "extend_backward"):
        k = min(len(reference), len(frames))
        got = frames[:k] if task == "extend" else frames[-k:]
        want = reference[-k:] if task == "extend" else reference[:k]
        out["given_frames_psnr"] = _psnr(got, want)
        out["first_frame_psnr"] = _psnr(got[0], want[0])
        joint = k if task == "extend" else len(frames) - k
        joints = [joint] + list(joints or [])
    elif task == "loop":
        ch = _changes(frames)
        out["seam_ratio"] = (
            _rms(frames[-1], frames[0]) / max(float(ch.mean()), VISIBLE_CHANGE) if len(ch) else None
        )
    elif task == "connect":
        if reference is not None and reference_b is not None:
            joints = [len(reference), len(frames) - len(reference_b)] + list(joints or [])
    elif task == "draft":
        from PIL import Image

        h, w = reference.shape[1:3]
        n = min(len(reference), len(frames))
        idx = np.linspace(0, len(frames) - 1, n).round().astype(int)
        down = np.stack([np.asarray(Image.fromarray(frames[i]).resize((w, h), Image.BOX)) for i in idx])
        out["draft_psnr"] = _psnr(down, reference[np.linspace(0, len(reference) - 1, n).round().astype(int)])
    if task in ("connect", "long", "extend", "extend_backward") and joints:
        ch = _changes(frames)
        if len(ch):
            vals = [
                ch[j - 1] / max(float(np.median(ch)), VISIBLE_CHANGE) for j in joints if 1 <= j < len(frames)
            ]
            out["joint_discontinuity"] = float(max(vals)) if vals else None
    if task == "long" and scene is not None:
        window = int(round(10 * fps))
        if len(frames) >= 2 * window:
            # Adherence is all-or-nothing per object, so with it the parts (color, shape, ...)
            # that tell what drifted.
            first = window_adherence(scene, frames[:window], fps)
            last = window_adherence(scene, frames[-window:], fps)
            out |= {
                "adherence_first10s": first["adherence"],
                "adherence_last10s": last["adherence"],
                "drift": first["adherence"] - last["adherence"],
                "first10s": first,
                "last10s": last,
            }
        else:
            out["drift"] = None
    return out


def evaluate_clip(
    frames: np.ndarray,
    fps: float,
    prompt: str,
    *,
    task: str | None = None,
    reference: np.ndarray | None = None,
    reference_b: np.ndarray | None = None,
    joints: list[int] | None = None,
    detection: Detection | None = None,
) -> dict:
    """All metrics for one clip (uint8 [T, H, W, 3]) against its prompt; see docs/world_and_eval.md."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise UserError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    scene = parse_caption(prompt)
    det = detection or detect(frames, fps)
    out: dict = {"prompt": prompt, "frames": int(len(frames)), "fps": float(fps)}
    out["width"], out["height"] = int(frames.shape[2]), int(frames.shape[1])
    matched, per_object = _checked(scene, det)
    out |= _score(scene, det, matched, per_object)
    out["flicker"] = flicker(frames, det)
    keep = [t for t in matched if t is not None]
    # identity kept: matched objects keep their color (bar a contact change) for the whole clip
    out["identity_kept"] = (
        float(np.mean([len({c.color for c in t.comps}) <= (2 if t.color_change_time else 1) for t in keep]))
        if keep
        else None
    )
    walls = [t for s, t in zip(scene.objects, matched) if s.behind_wall and t is not None]
    out["reappeared"] = float(np.mean([det.wall and t.reappeared for t in walls])) if walls else None
    # Like every check, these answer only what the prompt asks: stray specks in a clip whose
    # prompt has no dots are not "dots that came back".
    asks_trail, asks_dots = any(s.trail for s in scene.objects), any(s.eats for s in scene.objects)
    out["trail_persistence"] = det.paint_persistence if asks_trail else None
    out["dots_stay_gone"] = (
        float(det.dots_stay_gone) if asks_dots and det.dots_stay_gone is not None else None
    )
    if task is None and len(frames) >= 20 * fps:
        task = "long"
    if task is not None:
        out |= task_metrics(frames, fps, task, reference, reference_b, joints, scene)
        out["task"] = task
    out["detected"] = det.summary()
    return out


SUMMARY_KEYS = ("adherence", "color_right", "shape_right", "size_right", "motion_right", "background_right",
                "camera_right", "events_right", "flicker")  # fmt: skip


def read_prompts(path: str | Path) -> list[dict]:
    """The rows of a prompts JSONL, each with its clip's file name in "video" (given as "video" or "file")."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"prompts file {str(path)!r} does not exist")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise UserError(f"prompts file {str(path)!r} is not UTF-8 text") from None
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(f"{str(path)!r} line {n} is not JSON") from None
        name = (row.get("video") or row.get("file")) if isinstance(row, dict) else None
        if not isinstance(name, str) or not isinstance(row.get("prompt"), str):
            raise UserError(f"{str(path)!r} line {n} needs 'video' (or 'file') and 'prompt', both text")
        rows.append(row | {"video": name})
    return rows


def evaluate_folder(folder: str | Path, prompts: str | Path, **kwargs) -> dict:
    """Evaluate every clip named in a JSONL of {"video": name, "prompt": ...}; per-clip rows
    plus the mean of each summary metric over the clips where it applies."""
    from cinegen.media import read_video

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{str(folder)!r} is not a folder")
    rows = []
    for row in read_prompts(prompts):
        name = row["video"]
        frames, fps = read_video(folder / name)
        result = evaluate_clip(frames, fps, row["prompt"], **kwargs)
        result["video"] = name
        rows.append(result)
    summary = {}
    for key in SUMMARY_KEYS:
        vals = [r[key] for r in rows if r.get(key) is not None]
        summary[key] = float(np.mean(vals)) if vals else None
    return {"clips": rows, "summary": summary, "count": len(rows)}
