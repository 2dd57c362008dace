"""Pixel detector: what a clip shows, from its pixels alone (no ground truth, no prompt).

Pipeline (WORLD.md): downscale to a working resolution (fast, and averages noise away) →
classify pixels by hue to the nearest palette color (a blend of a palette color with a
neutral background keeps its hue, so anti-aliased and compressed edges stay their color),
keeping a pixel when its chroma is over half the local peak (the 50% coverage line) →
connected components per color, one vectorised pass per color → tracks by Hungarian
matching of centroids → per track color, shape (3- and 4-fold complex moments), size (area →
radius), motion (in world coordinates, after undoing the camera) and events; background tone
and pattern from the neutral pixels; camera pan and zoom jointly from the phase and period of
the pattern's Fourier fundamental in each frame.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from cinegen.world.vocab import (
    BACKGROUND_TONES,
    BOUNCE_HEIGHT,
    COLORS,
    PAN_SPEED,
    PATTERN_CELL,
    PATTERN_TONES,
    SIZES,
    WALL_COLOR,
    ZOOM_RATE,
)

WORK_SIDE = 128  # frames are block-averaged down to about this shorter side
MIN_CHROMA = 32.0  # chroma (distance from the gray axis) below which a pixel is neutral
MAX_HUE_ERROR = math.radians(18)  # hue farther than this from every palette color: unknown
DOT_AREA = 0.0052  # fraction of L^2: dots (0.0038) are below, a small triangle (0.0064) above
SHAPE_AREA = {"circle": math.pi, "square": 4.0, "triangle": 3 * math.sqrt(3) / 4}  # area / r^2
MOTION_WINDOW = 2.0  # seconds: WORLD.md guarantees the stated motion for the first 2 s


def _hue_vec(rgb: np.ndarray) -> np.ndarray:
    """Chroma vector: rgb projected on the plane orthogonal to gray, as (a, b) coordinates."""
    rgb = np.asarray(rgb, dtype=np.float32)
    a = rgb[..., 0] - 0.5 * (rgb[..., 1] + rgb[..., 2])
    b = (math.sqrt(3) / 2) * (rgb[..., 1] - rgb[..., 2])
    return np.stack([a, b], axis=-1)


COLOR_NAMES = list(COLORS)
_PALETTE_HUE = np.array([math.atan2(v[1], v[0]) for v in _hue_vec(np.array(list(COLORS.values())))])


@dataclass
class Component:
    frame: int
    color: str
    area: float  # working pixels
    centroid: np.ndarray  # (x, y) working pixels
    rmax: float
    orient3: complex  # complex moments sum (z - centroid)^3 and ^4: shape by magnitude,
    orient4: complex  # orientation of triangles / squares by phase
    border: bool  # touches the frame edge (clipped: shape and centroid unreliable)


@dataclass
class Track:
    color: str  # color at the start
    final_color: str
    frames: list[int]
    comps: list[Component]
    shape: str | None = None
    size: str | None = None
    radius: float = 0.0  # fraction of the shorter side, at first sight
    motion: str | None = None
    velocity: tuple[float, float] = (0.0, 0.0)  # frame extents per second, world coords
    hidden: bool = False  # vanished (or mostly) mid-clip
    reappeared: bool = False
    hide_time: float | None = None
    color_change_time: float | None = None
    touching_at_change: bool = False
    trail: str | None = None
    eats: str | None = None

    def summary(self) -> dict:
        keys = [
            "color",
            "final_color",
            "shape",
            "size",
            "radius",
            "motion",
            "velocity",
            "hidden",
            "reappeared",
        ]
        keys += ["color_change_time", "trail", "eats"]
        return {k: getattr(self, k) for k in keys} | {
            "first_frame": self.frames[0],
            "frames": len(self.frames),
        }


@dataclass
class Detection:
    width: int
    height: int
    fps: float
    num_frames: int
    tone: str | None
    pattern: str | None
    camera: str | None
    pan_rate: float  # content shift, shorter sides per second (+ = content moves right)
    zoom_rate: float  # log-scale per second (+ = zooming in)
    wall: bool
    tracks: list[Track]
    paint: dict[str, float] = field(default_factory=dict)  # trail color → painted fraction of frame
    dots: dict[str, list[int]] = field(default_factory=dict)  # dot color → count per frame
    paint_persistence: float | None = None  # fraction of painted pixels still painted a frame later
    dots_stay_gone: bool | None = None
    # Working-resolution class map and gray level, kept so metrics (flicker) need not redo them.
    labels: np.ndarray | None = field(default=None, repr=False)
    gray: np.ndarray | None = field(default=None, repr=False)

    @property
    def objects(self) -> list[Track]:
        return self.tracks

    def summary(self) -> dict:
        return {
            "tone": self.tone,
            "pattern": self.pattern,
            "camera": self.camera,
            "pan_rate": round(self.pan_rate, 4),
            "zoom_rate": round(self.zoom_rate, 4),
            "wall": self.wall,
            "objects": [t.summary() for t in self.tracks],
            "trails": sorted(self.paint),
            "dots": {c: [n[0], n[-1]] for c, n in self.dots.items()},
        }


# ---------------------------------------------------------------------------------------
# Pixels


def downscale(frames: np.ndarray) -> tuple[np.ndarray, int]:
    """Block-average to about WORK_SIDE on the shorter side; returns float32 frames and factor."""
    T, H, W, _ = frames.shape
    k = max(1, min(H, W) // WORK_SIDE)
    if k == 1:
        return frames.astype(np.float32), 1
    h, w = H // k, W // k
    x = frames[:, : h * k, : w * k].astype(np.float32)
    return x.reshape(T, h, k, w, k, 3).mean(axis=(2, 4)), k


_HUE_BINS = 720  # half-degree hue bins: the palette lookup is one table read per pixel


def _hue_table() -> np.ndarray:
    """Palette index per hue bin (-1 where no palette hue is within MAX_HUE_ERROR)."""
    centres = (np.arange(_HUE_BINS) + 0.5) * (2 * np.pi / _HUE_BINS) - np.pi
    diff = np.abs(np.angle(np.exp(1j * (centres[:, None] - _PALETTE_HUE[None]))))
    idx = np.argmin(diff, axis=1)
    return np.where(diff[np.arange(_HUE_BINS), idx] < MAX_HUE_ERROR, idx, -1).astype(np.int8)


_HUE_TABLE = _hue_table()


def classify(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel palette index (-1 = neutral or unknown) and gray level, for float frames.

    A pixel belongs to a color when its hue is near that color's and its chroma is at least
    half the chroma nearby (and above MIN_CHROMA). Half the local peak is where an
    anti-aliased (or blurred, or chroma-subsampled) edge crosses 50% coverage, so areas are
    unbiased, and the rim pixels that noise pushes just over an absolute threshold — specks
    that break shape measures — stay out. Relative to the local peak rather than to the
    palette chroma, so a model's washed-out colors are still found.
    """
    hv = _hue_vec(frames)
    chroma = np.hypot(hv[..., 0], hv[..., 1])
    hue = np.arctan2(hv[..., 1], hv[..., 0])
    bins = ((hue + np.pi) * (_HUE_BINS / (2 * np.pi))).astype(np.int32) % _HUE_BINS
    labels = _HUE_TABLE[bins]
    # Local peak over a 5x5 window of the 3x3-smoothed chroma (smoothing keeps one noisy
    # pixel from setting the peak).
    smooth = ndimage.uniform_filter(chroma, size=(1, 3, 3), mode="nearest")
    peak = ndimage.maximum_filter(smooth, size=(1, 5, 5), mode="nearest")
    ok = (chroma > MIN_CHROMA) & (chroma >= 0.5 * peak)
    labels = np.where(ok, labels, np.int8(-1))
    gray = frames.mean(axis=-1)
    return labels, gray


# Connectivity within a frame only: one label call per color covers the whole clip.
_IN_FRAME = np.zeros((3, 3, 3), dtype=bool)
_IN_FRAME[1] = True


def components(labels: np.ndarray, min_area: float) -> list[list[Component]]:
    """Connected components of each color in every frame, [T] lists, with their moments.

    Vectorised: one 3-D labelling per color (no connectivity across frames), then every
    per-component sum by `np.bincount` over the labelled pixels.
    """
    T, H, W = labels.shape
    out: list[list[Component]] = [[] for _ in range(T)]
    for ci, name in enumerate(COLOR_NAMES):
        mask = labels == ci
        if not mask.any():
            continue
        lab, n = ndimage.label(mask, structure=_IN_FRAME)
        t, y, x = np.nonzero(lab)
        idx = lab[t, y, x]
        area = np.bincount(idx, minlength=n + 1).astype(np.float64)
        keep = area >= min_area
        keep[0] = False
        if not keep.any():
            continue
        sel = keep[idx]
        t, y, x, idx = t[sel], y[sel] + 0.5, x[sel] + 0.5, idx[sel]
        a = np.maximum(area, 1.0)
        cx = np.bincount(idx, x, n + 1) / a
        cy = np.bincount(idx, y, n + 1) / a
        frame = np.zeros(n + 1, np.int64)
        frame[idx] = t
        dz = (x - cx[idx]) + 1j * (y - cy[idx])
        r2 = dz.real**2 + dz.imag**2
        rmax2 = np.zeros(n + 1)
        np.maximum.at(rmax2, idx, r2)
        # Complex moments sum (z - centroid)^k: |c3| is large only for a triangle (3-fold
        # symmetry), |c4| only for a square (4-fold); a disc has neither. Sums over the
        # whole area, so a stray rim pixel moves them little (unlike the farthest pixel).
        z3, z4 = dz**3, dz**4
        c3 = np.bincount(idx, z3.real, n + 1) + 1j * np.bincount(idx, z3.imag, n + 1)
        c4 = np.bincount(idx, z4.real, n + 1) + 1j * np.bincount(idx, z4.imag, n + 1)
        edge = (t >= 0) & ((x < 1) | (y < 1) | (x > W - 1) | (y > H - 1))
        border = np.bincount(idx, edge, n + 1) > 0
        for k in np.flatnonzero(keep):
            out[frame[k]].append(
                Component(
                    frame=int(frame[k]), color=name, area=float(area[k]), centroid=np.array([cx[k], cy[k]]),
                    rmax=float(np.sqrt(rmax2[k])) + 0.5, orient3=complex(c3[k]), orient4=complex(c4[k]),
                    border=bool(border[k]),
                )
            )  # fmt: skip
    return out


def shape_features(c: Component) -> tuple[float, float]:
    """Scale- and rotation-free 3-fold and 4-fold moments, |c3| / A^2.5 and |c4| / A^3.
    Continuous shapes: triangle (0.071, 0), square (0, 0.0167), disc (0, 0); measured on
    renders at 96 px after mp4 + noise, or blur + noise: triangle q3 >= 0.05, others
    q3 <= 0.008; square q4 >= 0.013, others q4 <= 0.01."""
    a = max(c.area, 1.0)
    return abs(c.orient3) / a**2.5, abs(c.orient4) / a**3


def shape_of(comps: list[Component]) -> str | None:
    """Vote over unclipped, whole-looking views: median moments, thresholds midway between
    the classes (shape_features)."""
    views = [c for c in comps if not c.border] or comps
    if not views:
        return None
    biggest = max(c.area for c in views)
    views = [c for c in views if c.area >= 0.75 * biggest] or views
    q3, q4 = np.median([shape_features(c) for c in views], axis=0)
    if q3 > 0.03:
        return "triangle"
    return "square" if q4 > 0.0085 else "circle"


def size_of(radius: float) -> str:
    """Nearest size class on a log scale (boundaries at the geometric means)."""
    names = list(SIZES)
    logs = np.log([SIZES[n] for n in names])
    return names[int(np.argmin(np.abs(logs - math.log(max(radius, 1e-6)))))]


# ---------------------------------------------------------------------------------------
# Background and camera


def _wall_columns(labels: np.ndarray, gray: np.ndarray, short: int) -> np.ndarray:
    """Bool per column: the wall, a full-height band of WALL_COLOR around the centre that does
    not change over time. Column means make it robust to noise; the 2.5-level tolerance keeps
    the 65-level stripes of a black striped background out."""
    T, H, W = gray.shape
    neutral = labels < 0
    sums = np.where(neutral, gray, 0).sum(axis=(0, 1))
    counts = neutral.sum(axis=(0, 1))
    mean = sums / np.maximum(counts, 1)
    close = (np.abs(mean - WALL_COLOR[0]) < 2.5) & (counts > 0.5 * T * H)
    lab, n = ndimage.label(close)
    centre = lab[W // 2] if W > 1 else 0
    if centre == 0 or (lab == centre).sum() < 0.1 * short:
        return np.zeros(W, dtype=bool)
    return lab == centre


def _background(labels: np.ndarray, gray: np.ndarray, wall: np.ndarray) -> tuple[str | None, str | None]:
    tones = list(BACKGROUND_TONES)
    levels = np.array(
        [BACKGROUND_TONES[t][0] for t in tones] + [PATTERN_TONES[t][0] for t in tones], np.float32
    )
    frames = np.linspace(0, len(gray) - 1, min(len(gray), 6)).astype(int)
    g = gray[frames][:, :, ~wall]
    neutral = labels[frames][:, :, ~wall] < 0
    values = g[neutral]
    if values.size == 0:
        return None, None
    nearest = np.argmin(np.abs(values[:, None] - levels[None]), axis=1)
    counts = np.bincount(nearest, minlength=6)
    pair = counts[:3] + counts[3:]
    t = int(np.argmax(pair))
    alt_fraction = counts[3 + t] / max(pair[t], 1)
    if alt_fraction < 0.15:
        return tones[t], "plain"
    # Two tones: stripes are vertical, so they change along x but not along y.
    mid = (BACKGROUND_TONES[tones[t]][0] + PATTERN_TONES[tones[t]][0]) / 2
    binary = (ndimage.uniform_filter(gray[frames], size=(1, 3, 3)) > mid).astype(np.int8)  # noise-proof
    ok = labels[frames] < 0
    okx = ok[:, :, 1:] & ok[:, :, :-1]
    oky = ok[:, 1:] & ok[:, :-1]
    fx = (np.abs(np.diff(binary, axis=2))[okx]).mean() if okx.any() else 0.0
    fy = (np.abs(np.diff(binary, axis=1))[oky]).mean() if oky.any() else 0.0
    return tones[t], ("striped" if fy < 0.25 * fx else "checkered")


def _usable(labels: np.ndarray, wall: np.ndarray) -> np.ndarray:
    """Background pixels away from objects (their blended rims included) and the wall."""
    colored = ndimage.maximum_filter(labels >= 0, size=(1, 5, 5))
    return ~colored & ~wall[None, :]


def _pattern_spectrum(
    gray: np.ndarray, ok: np.ndarray, periods: np.ndarray, pattern: str
) -> tuple[np.ndarray, np.ndarray]:
    """Fourier coefficients of each frame's background at the pattern's fundamental, for
    every candidate period: ([T, K] power, [T, K, 1 or 2] x phase).

    Coordinates are relative to the frame centre, so a zoom (about the centre) changes the
    period but not the phase, and a pan changes the phase but not the period: the two are
    measured jointly and apart. Stripes carry the fundamental at (1/P, 0), a checkerboard at
    the diagonals (1/P, ±1/P); their phases are returned separately so each can be
    unwrapped over time before averaging (averaging wrapped phases jumps by pi).
    """
    T, H, W = gray.shape
    n = np.maximum(ok.sum(axis=(1, 2), keepdims=True), 1)
    mean = np.where(ok, gray, 0.0).sum(axis=(1, 2), keepdims=True) / n
    v = np.where(ok, gray - mean, 0.0).astype(np.complex64)
    k = (2 * np.pi / periods).astype(np.float32)  # [K]
    ex = np.exp(-1j * np.outer(np.arange(W) + 0.5 - W / 2, k)).astype(np.complex64)  # [W, K]
    rows = v @ ex  # [T, H, K]: the wave is separable in x and y (matmul: BLAS, unlike einsum)
    if pattern == "striped":
        a = rows.sum(axis=1)
        return np.abs(a), np.angle(a)[..., None]
    ey = np.exp(-1j * np.outer(np.arange(H) + 0.5 - H / 2, k)).astype(np.complex64)  # [H, K]
    a = (rows * ey).sum(axis=1)  # kx + ky
    b = (rows * np.conj(ey)).sum(axis=1)  # kx - ky
    return np.sqrt(np.abs(a) * np.abs(b)), np.stack([np.angle(a), np.angle(b)], axis=-1)


def _camera(
    gray: np.ndarray,
    labels: np.ndarray,
    wall: np.ndarray,
    pattern: str | None,
    fps: float,
    short: int,
) -> tuple[str | None, float, float]:
    """Camera motion from the background pattern: (name, pan rate, zoom rate).

    Pan rate in shorter sides per second (+ = content moves right, i.e. the camera pans
    left), zoom rate in log-scale per second (+ = in). Each frame's pattern period (zoom) and
    phase at the centre (pan) are fitted against time; the camera is named by whichever rate
    is larger relative to the world's speed (PAN_SPEED, ZOOM_RATE), when it is over half that
    speed.
    """
    T = len(gray)
    if T < 2 or pattern in (None, "plain"):
        return None, 0.0, 0.0
    # Global measure: a coarse grid of pixels (~64 on the shorter side) and ~8 frames per
    # second are plenty, and keep long or large clips cheap. Pans stay under half a period
    # between the kept frames at any fps >= 1 (vocab.PAN_SPEED).
    stride = max(1, short // 64)
    frames = np.arange(0, T, max(1, int(round(fps / 8))))
    g = gray[frames][:, ::stride, ::stride]
    ok = _usable(labels[frames], wall)[:, ::stride, ::stride]
    nominal = 2 * PATTERN_CELL * short / stride
    logp = np.linspace(-0.7, 0.7, 57)  # generated clips may draw the pattern at another scale
    power, phase = _pattern_spectrum(g, ok, nominal * np.exp(logp), pattern)
    best = np.argmax(power, axis=1)  # [F]
    # Parabolic refinement of the log period between grid points.
    rows = np.arange(len(frames))
    i = np.clip(best, 1, len(logp) - 2)
    lo, mid, hi = (np.log(power[rows, j] + 1e-6) for j in (i - 1, i, i + 1))
    den = lo - 2 * mid + hi
    offset = np.where(den < 0, 0.5 * (lo - hi) / np.where(den < 0, den, -1.0), 0.0)
    logp_k = logp[i] + np.clip(offset, -1, 1) * (logp[1] - logp[0])
    t = frames / fps
    # Zoom ping-pongs (vocab.ZOOM_RANGE): fit over the first 2 s, where it goes one way.
    early = t <= MOTION_WINDOW + 1e-6
    zoom = float(np.polyfit(t[early], logp_k[early], 1)[0]) if early.sum() >= 2 else 0.0
    # Pan: the phase at each frame's own best period, unwrapped frame to frame.
    ph = np.unwrap(phase[rows, best], axis=0).mean(axis=-1)
    shift = -ph * nominal * np.exp(logp_k) / (2 * np.pi) * stride  # content x shift, working px
    pan = float(np.polyfit(t, shift, 1)[0]) / short
    camera = None
    p_rel, z_rel = abs(pan) / PAN_SPEED, abs(zoom) / ZOOM_RATE
    if max(p_rel, z_rel) > 0.5:
        if z_rel >= p_rel:
            camera = "zoom in" if zoom > 0 else "zoom out"
        else:
            camera = "pan left" if pan > 0 else "pan right"
    return camera, pan, zoom


# ---------------------------------------------------------------------------------------
# Tracks


def _link(per_frame: list[list[Component]], gate: float) -> list[list[Component]]:
    """Frame-to-frame Hungarian matching of same-colored components by centroid distance."""
    active: list[list[Component]] = []
    done: list[list[Component]] = []
    for comps in per_frame:
        if not active:
            active = [[c] for c in comps]
            continue
        cost = np.full((len(active), len(comps)), 1e6)
        for i, tr in enumerate(active):
            last = tr[-1]
            for j, c in enumerate(comps):
                d = float(np.linalg.norm(c.centroid - last.centroid))
                ratio = max(c.area, last.area) / max(min(c.area, last.area), 1e-6)
                if c.color == last.color and d < gate and ratio < 50:
                    cost[i, j] = d
        rows, cols = linear_sum_assignment(cost) if comps else ([], [])
        matched_t, matched_c = set(), set()
        for i, j in zip(rows, cols):
            if cost[i, j] < 1e6:
                active[i].append(comps[j])
                matched_t.add(i)
                matched_c.add(j)
        done += [tr for i, tr in enumerate(active) if i not in matched_t]
        active = [tr for i, tr in enumerate(active) if i in matched_t]
        active += [[c] for j, c in enumerate(comps) if j not in matched_c]
    return done + active


def _join(a: Track, b: Track, fps: float, short: float) -> str | None:
    """How track `b` continues track `a`, if it does: "occlusion" (same look after a gap) or
    "contact" (another color, starting where `a` ended)."""
    if b is a or b.frames[0] <= a.frames[-1]:
        return None
    gap = b.frames[0] - a.frames[-1]
    if a.final_color == b.color:
        return "occlusion" if gap / fps <= 3.0 and not a.hidden else None
    if gap <= 2 and a.color_change_time is None:
        (ax, ay), (bx, by) = a.comps[-1].centroid, b.comps[0].centroid
        return "contact" if math.hypot(ax - bx, ay - by) < 0.15 * short else None
    return None


def _merge(tracks: list[Track], fps: float, short: float) -> list[Track]:
    """Join pieces of one object: across an occlusion gap (same color and shape) and across a
    color change on contact (one track ends where another, of another color, begins). Each
    track, in order of its start, takes the first later track that continues it, and again
    until none does."""
    tracks = sorted(tracks, key=lambda t: t.frames[0])
    starts = [t.frames[0] for t in tracks]
    reach = max(3.0 * fps, 2)  # the longest gap `_join` bridges, in frames
    # A join changes only `a`'s end, and whether a track continues another looks at the
    # other's end and its own start: every track before `a` still continues nothing, so
    # the scan goes on from `a` (a generated minute has hundreds of specks to scan), and
    # only over the tracks that start within reach of its end.
    i = 0
    while i < len(tracks):
        a = tracks[i]
        end = a.frames[-1]
        later = tracks[bisect.bisect_right(starts, end) : bisect.bisect_right(starts, end + reach)]
        joined = next(((b, kind) for b in later if (kind := _join(a, b, fps, short))), None)
        if joined is None:
            i += 1
            continue
        b, kind = joined
        if kind == "occlusion":
            a.hidden, a.reappeared, a.hide_time = True, True, a.frames[-1] / fps
        else:
            a.color_change_time = b.frames[0] / fps
        a.frames += b.frames
        a.comps += b.comps
        a.final_color = b.final_color
        tracks = [tr for tr in tracks if tr is not b]  # identity: == would compare arrays
        starts = [t.frames[0] for t in tracks]
    return tracks


def _orientation(comps: list[Component], shape: str) -> np.ndarray:
    n = 4 if shape == "square" else 3
    phases = np.array([np.angle(c.orient4 if n == 4 else c.orient3) for c in comps])
    return np.unwrap(phases) / n


def _motion(track: Track, fps: float, W: int, H: int, pan_px: float, zoom_rate: float) -> str | None:
    """Stated motion over the first 2 s, in world coordinates (camera pan and zoom undone)."""
    idx = [k for k, f in enumerate(track.frames) if f / fps <= MOTION_WINDOW + 1e-6]
    if len(idx) < 2 or (track.frames[idx[-1]] - track.frames[idx[0]]) / fps < 0.2:
        return None
    comps = [track.comps[k] for k in idx]
    t = np.array([c.frame / fps for c in comps])
    s = np.exp(zoom_rate * t)
    cx, cy = W / 2, H / 2
    xy = np.array([c.centroid for c in comps])
    x = cx + (xy[:, 0] - cx) / s - pan_px * t
    y = cy + (xy[:, 1] - cy) / s
    area = np.array([c.area for c in comps]) / s**2
    whole = np.array([not c.border for c in comps]) & (area >= 0.7 * area.max())
    if whole.sum() >= 2:
        tw, xw, yw = t[whole], x[whole], y[whole]
    else:
        tw, xw, yw = t, x, y
    vx = float(np.polyfit(tw, xw, 1)[0]) / W if np.ptp(tw) > 0 else 0.0
    vy = float(np.polyfit(tw, yw, 1)[0]) / H if np.ptp(tw) > 0 else 0.0
    track.velocity = (round(vx, 4), round(vy, 4))
    # bounces: falls, then rises again within the window. All views count here: a bouncing
    # object touches the frame's bottom edge on the floor (so it is `border`), and at low fps
    # the floor views are the only ones that show the drop.
    fall = np.maximum.accumulate(y) - y
    if np.ptp(y) > 0.15 * H and (fall > 0.06 * H).any() and (y.max() - y[0]) > 0.06 * H and abs(vx) < 0.12:
        return "bounces"
    if max(abs(vx), abs(vy)) > 0.1:
        if abs(vx) >= abs(vy):
            return "right" if vx > 0 else "left"
        return "down" if vy > 0 else "up"
    if track.shape in ("square", "triangle") and len(comps) >= 2:
        rate = float(np.polyfit(t, _orientation(comps, track.shape), 1)[0])
        if abs(rate) > 0.2:
            return "spins"
    growth = float(np.polyfit(t, np.log(np.maximum(area, 1.0)), 1)[0]) if np.ptp(t) > 0 else 0.0
    if growth > 0.2:
        return "grows"
    if growth < -0.2:
        return "shrinks"
    return "still"


def detect(frames: np.ndarray, fps: float) -> Detection:
    """Everything the clip shows. `frames`: uint8 [T, H, W, 3]."""
    if frames.ndim == 3:
        frames = frames[None]
    T, H0, W0, _ = frames.shape
    small, k = downscale(frames)
    labels, gray = classify(small)
    _, H, W = labels.shape
    short = min(H, W)
    min_area = max(3.0, 0.0008 * short * short)

    wall = _wall_columns(labels, gray, short)
    tone, pattern = _background(labels, gray, wall)
    camera, pan_rate, zoom_rate = _camera(gray, labels, wall, pattern, fps, short)

    per_frame = components(labels, min_area)
    dot_colors = _dot_colors(per_frame, short, fps)
    paint_colors, persistence = _paint_colors(labels, short)
    dots = {c: [sum(1 for x in comps if x.color == c) for comps in per_frame] for c in dot_colors}
    objects_only = [
        [c for c in comps if c.color not in dot_colors and c.color not in paint_colors] for comps in per_frame
    ]
    gate = 0.45 * max(H, W) / max(1.0, min(fps, 4.0)) + 0.15 * short
    # A bouncing object near the floor moves ~0.34 H per frame at 4 fps (falls 3/4 of
    # BOUNCE_HEIGHT in the last quarter period): a narrower gate splits its track in pieces.
    gate = max(gate, 0.8 * BOUNCE_HEIGHT * H)
    tracks = []
    for comps in _link(objects_only, gate):
        tr = Track(
            color=comps[0].color, final_color=comps[-1].color, frames=[c.frame for c in comps], comps=comps
        )
        tr.shape = shape_of(comps)
        tracks.append(tr)
    tracks = _merge(tracks, fps, short)
    # A real object is seen for a while; brief specks are noise or blends.
    tracks = [t for t in tracks if len(t.frames) >= max(1, min(3, T // 4))]
    for tr in tracks:
        tr.shape = shape_of([c for c in tr.comps if c.color == tr.color]) or tr.shape
        first = [c for c in tr.comps[:4] if not c.border] or tr.comps[:4]
        area = float(np.median([c.area for c in first])) / math.exp(zoom_rate * first[0].frame / fps) ** 2
        tr.radius = math.sqrt(area / SHAPE_AREA[tr.shape or "circle"]) / short
        tr.size = size_of(tr.radius)
        tr.motion = _motion(tr, fps, W, H, pan_rate * short, zoom_rate)
        _hide(tr, T, fps)
        if tr.color_change_time is not None:
            tr.touching_at_change = _touching(tr, tracks, int(round(tr.color_change_time * fps)))
    _attach_events(tracks, labels, paint_colors, per_frame, dot_colors, short)
    return Detection(
        width=W0, height=H0, fps=fps, num_frames=T, tone=tone, pattern=pattern, camera=camera,
        pan_rate=pan_rate, zoom_rate=zoom_rate, wall=bool(wall.any()), tracks=tracks,
        paint={c: float((labels[-1] == COLOR_NAMES.index(c)).mean()) for c in paint_colors},
        dots=dots, paint_persistence=persistence,
        dots_stay_gone=all(all(b <= a for a, b in zip(n, n[1:])) for n in dots.values()) if dots else None,
        labels=labels, gray=gray,
    )  # fmt: skip


def _hide(tr: Track, T: int, fps: float) -> None:
    """Mark a track that (mostly) disappears mid-clip, and whether it comes back."""
    areas = np.array([c.area for c in tr.comps])
    ref = np.maximum.accumulate(areas)
    low = (areas < 0.35 * ref) & (np.arange(len(areas)) > 0)
    if low.any() and not tr.hidden:
        k = int(np.argmax(low))
        tr.hidden, tr.hide_time = True, tr.frames[k] / fps
        tr.reappeared = bool((areas[k:] > 0.6 * ref[k]).any())
    if not tr.hidden and tr.frames[-1] < T - 1 and tr.frames[0] == 0:
        tr.hidden, tr.hide_time, tr.reappeared = True, (tr.frames[-1] + 1) / fps, False


def _touching(tr: Track, tracks: list[Track], frame: int) -> bool:
    me = next((c for c in tr.comps if c.frame >= frame), None)
    if me is None:
        return False
    for other in tracks:
        # a track's frames only grow, so its first and last bound it
        if other is tr or not other.frames[0] - 1 <= frame <= other.frames[-1] + 1:
            continue
        near = [c for c in other.comps if abs(c.frame - frame) <= 1]
        for c in near:
            if np.linalg.norm(c.centroid - me.centroid) <= 1.4 * (c.rmax + me.rmax):
                return True
    return False


def _dot_colors(per_frame: list[list[Component]], short: int, fps: float) -> set[str]:
    """Colors whose every component at first sight is dot-sized and stays put: dots to eat."""
    out = set()
    for name in COLOR_NAMES:
        first = next(
            (
                [c for c in comps if c.color == name]
                for comps in per_frame
                if any(c.color == name for c in comps)
            ),
            [],
        )
        if not first or any(c.area > DOT_AREA * short * short for c in first):
            continue
        later = [
            c
            for comps in per_frame[first[0].frame + 1 : first[0].frame + 4]
            for c in comps
            if c.color == name
        ]
        # Mostly static: a dot half covered by a passing object shifts its visible centroid.
        near = [min(np.linalg.norm(c.centroid - f.centroid) for f in first) < 0.02 * short for c in later]
        if not near or np.mean(near) >= 0.7:
            out.add(name)
    return out


def _paint_colors(labels: np.ndarray, short: int) -> tuple[set[str], float | None]:
    """Colors absent at the start whose pixels only ever accumulate: painted trails."""
    T = len(labels)
    out, keep = set(), []
    if T < 3:
        return out, None
    for ci, name in enumerate(COLOR_NAMES):
        mask = labels == ci
        areas = mask.sum(axis=(1, 2))
        if areas[-1] < 0.004 * short * short or areas[0] > 0.3 * areas[-1]:
            continue
        both = (mask[:-1] & mask[1:]).sum(axis=(1, 2))
        kept = list(both[areas[:-1] > 0] / areas[:-1][areas[:-1] > 0])
        # What was painted stays painted (the painter may cover some), and it grew after it appeared (an
        # object that turned this color on contact keeps its area and leaves pixels behind).
        appeared = int(np.argmax(areas > 0))
        grew = areas[-1] >= 1.6 * areas[appeared : appeared + 3].max() or appeared == T - 1
        if kept and np.mean(kept) > 0.7 and areas[-1] >= 0.75 * areas.max() and grew:
            out.add(name)
            keep += kept
    return out, (float(np.mean(keep)) if keep else None)


def _attach_events(
    tracks: list[Track],
    labels: np.ndarray,
    paint_colors: set[str],
    per_frame: list[list[Component]],
    dot_colors: set[str],
    short: int,
) -> None:
    """Give each trail and each set of dots to the object whose path runs along it."""
    if not tracks:
        return

    def path_distance(tr: Track, points: np.ndarray) -> float:
        path = np.array([c.centroid for c in tr.comps])
        return float(np.mean(np.min(np.linalg.norm(points[:, None] - path[None], axis=-1), axis=1)))

    for name in paint_colors:
        ys, xs = np.nonzero(labels[-1] == COLOR_NAMES.index(name))
        if len(xs) == 0:
            continue
        pick = np.linspace(0, len(xs) - 1, min(len(xs), 200)).astype(int)
        points = np.stack([xs[pick] + 0.5, ys[pick] + 0.5], 1)
        best = min(tracks, key=lambda tr: path_distance(tr, points))
        best.trail = name
    for name in dot_colors:
        first = next(
            (
                [c for c in comps if c.color == name]
                for comps in per_frame
                if any(c.color == name for c in comps)
            ),
            [],
        )
        points = np.array([c.centroid for c in first])
        counts = [sum(1 for c in comps if c.color == name) for comps in per_frame]
        if len(points) and counts[-1] < counts[0]:
            best = min(tracks, key=lambda tr: path_distance(tr, points))
            best.eats = name


def pattern_period(short: int) -> float:
    """Pattern period in pixels for a frame with this shorter side."""
    return 2 * PATTERN_CELL * short
