"""Training data: the procedural world (rendered on the fly) or a folder of captioned videos.

Clips come in buckets (width, height, latent frames, fps); every batch is drawn from one
bucket so tensors stack. Batch `k` is a pure function of (seed, rank, k), so a resumed run
sees exactly the data it would have seen.

The denoiser trains on cached latents: the VAE encoder costs more per clip than a
denoiser step, so each clip is rendered and encoded once (`LatentCache`) and reused.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from cinegen.config import DataConfig
from cinegen.errors import UserError


def read_captions(path: str | Path) -> list[str]:
    """A captions file: one caption per line, blank lines skipped."""
    return [line for line in Path(path).read_text().splitlines() if line.strip()]


@dataclass(frozen=True)
class Bucket:
    width: int
    height: int
    latent_frames: int
    fps: float

    def frames(self, time_factor: int) -> int:
        return 1 + (self.latent_frames - 1) * time_factor


def make_buckets(cfg: DataConfig, time_factor: int) -> list[Bucket]:
    """Every (size, length, fps) whose duration is at most `cfg.max_seconds`."""
    buckets = [
        Bucket(w, h, k, fps)
        for (w, h) in cfg.sizes
        for k in cfg.latent_frames
        for fps in cfg.fps
        if (1 + (k - 1) * time_factor) / fps <= cfg.max_seconds
    ]
    if not buckets:
        raise UserError(f"no clip of latent_frames {list(cfg.latent_frames)} at fps {list(cfg.fps)} "
                        f"lasts at most max_seconds = {cfg.max_seconds:g}")
    return buckets


def batch_rng(seed: int, rank: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, rank, index])


def to_video(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float (3, T, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float() / 127.5 - 1.0


# ----------------------------------------------------------------------------- sources


class WorldSource:
    """Captions from a fixed pool of random world scenes, each rendered with a fresh seed.

    Scenes listed in the held-out file are never in the pool, so evaluation captions are
    combinations the model has not seen.
    """

    def __init__(self, cfg: DataConfig, seed: int):
        from cinegen.world import parse_caption, random_scene, write_caption

        heldout = {
            parse_caption(line)
            for path in (cfg.heldout, cfg.heldout_events)
            if path and Path(path).is_file()
            for line in read_captions(path)
        }
        rng = np.random.default_rng([seed, 7])
        self.scenes, self.captions = [], []
        while len(self.scenes) < cfg.caption_pool:
            scene = random_scene(rng, max_objects=cfg.max_objects, events=cfg.events, camera=cfg.camera,
                                 wall=cfg.wall)
            if scene in heldout:
                continue
            self.scenes.append(scene)
            self.captions.append(write_caption(scene, rng))
        self.heldout = heldout

    def __len__(self) -> int:
        return len(self.scenes)

    def clip(self, index: int, width: int, height: int, frames: int, fps: float, seed: int) -> np.ndarray:
        from cinegen.world import render

        return render(self.scenes[index], width=width, height=height, fps=fps, num_frames=frames, seed=seed,
                      masks=False).frames

    def clip_with_objects(self, index: int, width: int, height: int, frames: int, fps: float, seed: int
                          ) -> tuple[np.ndarray, np.ndarray]:
        """The clip and a bool (T, H, W) mask of its visible object pixels."""
        from cinegen.world import render

        clip = render(self.scenes[index], width=width, height=height, fps=fps, num_frames=frames, seed=seed)
        objects = np.zeros(clip.frames.shape[:3], dtype=bool)
        for k, truth in enumerate(clip.truth):
            for o in truth.objects:
                objects[k] |= o.mask
        return clip.frames, objects


class FolderSource:
    """A folder with `manifest.jsonl` lines `{"video": "a.mp4", "caption": "..."}`.

    Clips are centre-cropped to the bucket's aspect, resized, and sampled at the bucket's
    fps from a random start.
    """

    def __init__(self, folder: str | Path):
        from cinegen.media import check_video  # PyAV only for real videos: world training runs without it

        folder = Path(folder)
        manifest = folder / "manifest.jsonl"
        if not folder.is_dir():
            raise UserError(f"data folder {str(folder)!r} does not exist")
        if not manifest.is_file():
            raise UserError(f"data folder {str(folder)!r} has no manifest.jsonl")
        self.manifest = manifest
        self.paths, self.captions, self.lines = [], [], []
        try:
            lines = manifest.read_text().splitlines()
        except UnicodeDecodeError:
            raise UserError(f"{manifest} is not UTF-8 text") from None
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                video, caption = folder / item["video"], item["caption"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise UserError(f"{manifest}:{n} is not {{\"video\": ..., \"caption\": ...}}") from None
            # Checked here, not when a batch first draws the clip, maybe hours into a run.
            if not isinstance(caption, str):
                raise UserError(f"{manifest}:{n}: caption {caption!r} is not a string")
            if not video.is_file():
                missing = "is not a file" if video.exists() else "does not exist"
                raise UserError(f"{manifest}:{n}: video {str(video)!r} {missing}")
            # Headers only: a corrupt clip failed when a batch drew it, far into the run.
            try:
                check_video(video)
            except UserError as error:
                raise UserError(f"{manifest}:{n}: {error}") from None
            self.paths.append(video)
            self.captions.append(caption)
            self.lines.append(n)
        if not self.paths:
            raise UserError(f"{manifest} lists no videos")

    def __len__(self) -> int:
        return len(self.paths)

    def clip(self, index: int, width: int, height: int, frames: int, fps: float, seed: int) -> np.ndarray:
        from cinegen.media import read_video  # PyAV only for real videos: world training runs without it

        try:
            video, source_fps = read_video(self.paths[index])
        except UserError as error:
            # Frames damaged behind a sound header (a file cut short or overwritten partway) show only
            # here, when a batch or the latent cache build first decodes the clip. The run stops
            # rather than skipping it: a skip is met in a render worker or on another rank, which
            # cannot write the run's log, and damaged videos could then train on next to nothing
            # without a word. Stopped, the run keeps its checkpoint and resumes once the line is fixed.
            raise UserError(f"{self.manifest}:{self.lines[index]}: {error}; repair the video or remove its line, "
                            "then start the run again (it resumes from its last checkpoint, if it has one)") from None
        rng = np.random.default_rng(seed)
        step = source_fps / fps
        span = max(1, len(video) - int(math.ceil(step * (frames - 1))))
        start = int(rng.integers(0, span))
        picks = np.clip((start + step * np.arange(frames)).round().astype(int), 0, len(video) - 1)
        return np.stack([_fit(video[i], width, height) for i in picks])


def _fit(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = frame.shape[:2]
    scale = max(width / w, height / h)
    cw, ch = round(width / scale), round(height / scale)
    y, x = (h - ch) // 2, (w - cw) // 2
    image = Image.fromarray(frame[y : y + ch, x : x + cw]).resize((width, height), Image.BICUBIC)
    return np.asarray(image)


def make_source(cfg: DataConfig, seed: int):
    return WorldSource(cfg, seed) if cfg.source == "world" else FolderSource(cfg.source)


# ----------------------------------------------------------------------------- batches


@dataclass
class VideoBatch:
    video: torch.Tensor  # (B, 3, T, H, W) in [-1, 1]
    caption_ids: torch.Tensor  # (B,) index into the source's captions
    fps: float
    objects: torch.Tensor | None = None  # (B, 1, T, H, W) 1.0 on object pixels, when the source knows them


def video_batch(source, buckets: list[Bucket], time_factor: int, batch_size: int, rng: np.random.Generator,
                objects: bool = False) -> VideoBatch:
    """A batch from one random bucket; `objects` also returns object masks if the source has them."""
    bucket = buckets[int(rng.integers(len(buckets)))]
    ids = rng.integers(len(source), size=batch_size)
    args = [(int(i), bucket.width, bucket.height, bucket.frames(time_factor), bucket.fps, int(rng.integers(2**31)))
            for i in ids]
    clips, masks = render_clips(source, args, objects)
    mask = torch.from_numpy(masks).float()[:, None] if masks is not None else None
    return VideoBatch(torch.stack([to_video(c) for c in clips]), torch.from_numpy(ids), bucket.fps, mask)


def render_clips(source, args: list[tuple], objects: bool) -> tuple[list[np.ndarray], np.ndarray | None]:
    """`source.clip(*a)` for each of `args`; with `objects`, and a source that knows them, also
    the clips' bool (N, T, H, W) object masks."""
    if objects and hasattr(source, "clip_with_objects"):
        clips, masks = zip(*(source.clip_with_objects(*a) for a in args))
        return list(clips), np.stack(masks)
    return [source.clip(*a) for a in args], None


@dataclass
class LatentBatch:
    latent: torch.Tensor  # (B, C, T, H, W)
    caption_ids: torch.Tensor  # (B,)
    fps: torch.Tensor  # (B,)
    objects: torch.Tensor | None = None  # (B, 1, T, H, W) 1.0 where a latent cell holds an object


def latent_cells(pixels: torch.Tensor, time_factor: int, spatial_factor: int) -> torch.Tensor:
    """Bool pixel masks (B, T, H, W) -> (B, 1, 1 + (T-1)/tf, H/sf, W/sf): True where any pixel of
    the cell is set. Frame 0 is a cell of its own, as in the causal VAE."""
    padded = torch.cat([pixels[:, :1].expand(-1, time_factor - 1, -1, -1), pixels], dim=1)
    b, t, h, w = padded.shape
    cells = padded.view(b, t // time_factor, time_factor, h // spatial_factor, spatial_factor,
                        w // spatial_factor, spatial_factor)
    return cells.any(6).any(4).any(2)[:, None]


def encoder_fingerprint(vae) -> str:
    """A hash of what a VAE's latents depend on: its encoder's weights and strides, and the
    statistics `encode` normalises by. The decoder (and a gate after it) is left out:
    a decoder fine-tuned on a frozen encoder gives the same latents, so their cache stays good."""
    digest = hashlib.sha256(repr((vae.config.patch, vae.config.spatial_downsample,
                                  vae.config.time_downsample)).encode())
    for name, value in vae.state_dict().items():
        if name.startswith("encoder.") or name in ("latent_mean", "latent_std"):
            value = value.detach().cpu().contiguous()
            digest.update(f"{name} {value.dtype} {tuple(value.shape)}".encode())
            digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


class LatentCache:
    """Clips rendered and encoded once: per bucket, latents, caption ids and (world clips)
    a bool map of the latent cells that hold an object; and the `encoder_fingerprint` of the
    VAE that encoded them (None in caches saved before it was kept).

    `tokens_per_batch` sets each bucket's batch size (short clips and images get bigger
    batches), so every step costs about the same.
    """

    def __init__(self, groups: dict[Bucket, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]],
                 tokens_per_batch: int, patch: int,
                 max_batch: int = 64, fingerprint: str | None = None):
        self.groups = groups
        self.fingerprint = fingerprint
        self.buckets = sorted(groups, key=lambda b: (b.width, b.height, b.latent_frames, b.fps))
        self.batch_sizes = {}
        for b in self.buckets:
            latent = groups[b][0]
            tokens = latent.shape[2] * (latent.shape[3] // patch) * (latent.shape[4] // patch)
            self.batch_sizes[b] = max(1, min(max_batch, tokens_per_batch // tokens))

    @property
    def clips(self) -> int:
        return sum(len(ids) for _, ids, _ in self.groups.values())

    @classmethod
    @torch.no_grad()
    def build(cls, source, vae, buckets: list[Bucket], clips: int, seed: int, tokens_per_batch: int, patch: int,
              encode_batch: int = 16, workers: int = 0, max_batch: int = 64,
              stop: Callable[[], bool] | None = None) -> LatentCache:
        """Render and encode `clips` clips; world clips also keep which latent cells hold an object.

        `workers` processes render while this one encodes on the VAE's device; the result does
        not depend on how many there are. `stop`, asked after each encoded chunk but the last,
        ends the build early with the clips encoded so far when it returns True (a time budget
        spent)."""
        rng = np.random.default_rng([seed, 11])
        assignments: dict[Bucket, list[int]] = {}
        for _ in range(clips):
            bucket = buckets[int(rng.integers(len(buckets)))]
            assignments.setdefault(bucket, []).append(int(rng.integers(len(source))))
        tf, sf = vae.config.time_factor, vae.config.spatial_factor
        device = next(vae.parameters()).device
        # Every clip's render arguments, its seed included, are fixed here, before any rendering,
        # so the workers' order cannot change what is drawn.
        chunks: list[tuple[Bucket, list[tuple]]] = []
        for bucket, ids in assignments.items():
            for start in range(0, len(ids), encode_batch):
                args = [(i, bucket.width, bucket.height, bucket.frames(tf), bucket.fps, int(rng.integers(2**31)))
                        for i in ids[start : start + encode_batch]]
                chunks.append((bucket, args))
        # Encoded with the buckets interleaved, each at the pace of its share of the chunks, so a
        # build that `stop` ends early keeps the planned mix of sizes and lengths rather than the
        # first buckets alone. Each bucket's chunks keep their order: a whole build is unchanged.
        within: dict[Bucket, int] = {}
        pace = []
        for bucket, _ in chunks:
            within[bucket] = within.get(bucket, 0) + 1
            pace.append(within[bucket] - 0.5)
        chunks = [chunks[k] for k in sorted(range(len(chunks)), key=lambda k: pace[k] / within[chunks[k][0]])]
        rendered = prefetch(_RenderedChunks(source, chunks), workers)
        parts: dict[Bucket, list] = {bucket: [] for bucket in assignments}
        bar = tqdm(total=clips, desc="rendering and encoding clips", unit="clip")
        for k, ((bucket, args), (video, masks)) in enumerate(zip(chunks, rendered, strict=True), 1):
            cells = latent_cells(masks, tf, sf) if masks is not None else None
            parts[bucket].append((vae.encode(video.to(device)).half().cpu(), torch.tensor([a[0] for a in args]), cells))
            bar.update(len(args))
            if stop is not None and k < len(chunks) and stop():
                break
        bar.close()
        groups = {}
        for bucket, rows in parts.items():
            if rows:  # a build ended early may have reached no chunk of some buckets
                latents, ids, cells = zip(*rows)
                groups[bucket] = (torch.cat(latents), torch.cat(ids), torch.cat(cells) if cells[0] is not None else None)
        return cls(groups, tokens_per_batch, patch, max_batch, encoder_fingerprint(vae))

    def save(self, path: str | Path) -> None:
        payload = {"vae": self.fingerprint, "groups": [(b.__dict__, *group) for b, group in self.groups.items()]}
        tmp = Path(str(path) + ".tmp")
        torch.save(payload, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, tokens_per_batch: int, patch: int, max_batch: int = 64) -> LatentCache:
        payload = torch.load(path, weights_only=True)
        # Caches written before the VAE's fingerprint was kept are the bare list of groups.
        fingerprint, groups = (payload["vae"], payload["groups"]) if isinstance(payload, dict) else (None, payload)
        # Caches written before object masks existed hold (bucket, latents, ids) only.
        return cls({Bucket(**b): (lat, ids, *(rest or [None])) for b, lat, ids, *rest in groups},
                   tokens_per_batch, patch, max_batch, fingerprint)

    def batch(self, rng: np.random.Generator) -> LatentBatch:
        # Buckets are drawn in proportion to how many clips they hold.
        sizes = np.array([len(self.groups[b][1]) for b in self.buckets], dtype=np.float64)
        bucket = self.buckets[int(rng.choice(len(self.buckets), p=sizes / sizes.sum()))]
        latents, ids, objects = self.groups[bucket]
        pick = torch.from_numpy(rng.integers(len(ids), size=self.batch_sizes[bucket]))
        return LatentBatch(latents[pick].float(), ids[pick], torch.full((len(pick),), bucket.fps),
                           objects[pick].float() if objects is not None else None)


class _RenderedChunks(torch.utils.data.Dataset):
    """Chunk k of a cache build, rendered: (video (B, 3, T, H, W), object masks (B, T, H, W) or None)."""

    def __init__(self, source, chunks: list[tuple[Bucket, list[tuple]]]):
        self.source, self.chunks = source, chunks

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, k: int):
        clips, masks = render_clips(self.source, self.chunks[k][1], objects=True)
        return torch.stack([to_video(c) for c in clips]), torch.from_numpy(masks) if masks is not None else None


def prefetch(dataset: torch.utils.data.Dataset, workers: int) -> Iterator:
    """`dataset`'s items in order, made `workers` processes ahead (0: here, when asked for). A
    `UserError` an item raises is raised here with its one-line message: DataLoader raises a
    worker's exception again with the worker's traceback as its message, and the CLI printed that
    traceback for a damaged video."""
    loader = torch.utils.data.DataLoader(_UserErrorsAsItems(dataset), batch_size=None, num_workers=workers,
                                         prefetch_factor=4 if workers else None)
    for item in loader:
        if isinstance(item, _RaisedUserError):
            raise UserError(item.message)
        yield item


@dataclass
class _RaisedUserError:
    message: str


class _UserErrorsAsItems(torch.utils.data.Dataset):
    """`dataset`, with a `UserError` returned as a `_RaisedUserError` item instead of raised."""

    def __init__(self, dataset: torch.utils.data.Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, k: int):
        try:
            return self.dataset[k]
        except UserError as error:
            return _RaisedUserError(str(error))


class StepBatches(torch.utils.data.Dataset):
    """Batches `start`..`end - 1` of a run: item k is `accumulate` micro-batches `(loss_seed,
    make(rng))`, micro-batch j with rng a pure function of (seed, rank * accumulate + j, k), so
    DataLoader workers can prepare batches ahead, a resumed run still sees exactly the data it
    would have seen, and one process accumulating N micro-batches draws what N processes draw."""

    def __init__(self, make, seed: int, rank: int, start: int, end: int, accumulate: int = 1):
        self.make, self.seed, self.rank, self.start, self.end = make, seed, rank, start, end
        self.accumulate = accumulate

    def __len__(self) -> int:
        return max(0, self.end - self.start)

    def __getitem__(self, i: int):
        micro = []
        for virtual_rank in range(self.rank * self.accumulate, (self.rank + 1) * self.accumulate):
            rng = batch_rng(self.seed, virtual_rank, self.start + i)
            loss_seed = int(rng.integers(2**62))
            micro.append((loss_seed, self.make(rng)))
        return micro
