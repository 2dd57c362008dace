"""Renderer: continuous-time simulation of a `Scene`, rasterised at any size, fps and length.

Everything is a closed-form function of time (linear motion reflected at the frame edges,
a parabola for `bounces`, ping-pong growth and zoom), so frame i is the world at exactly
t = i / fps whatever the fps, and events are timed on a fixed fine clock (1/240 s) that does
not depend on the frame rate either. Edges are anti-aliased analytically: shapes by
signed-distance coverage, patterns by box-filtering the square wave.

Coordinates are pixels with (0, 0) the top-left corner of the frame and pixel centres at
(j + 0.5, i + 0.5); y grows downward, so "up" is negative y. Trails, dots and the wall live
in screen space (the caption grammar does not mix them with camera motion).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from cinegen.errors import UserError
from cinegen.world.scene import ObjectSpec, Scene
from cinegen.world.vocab import (
    BACKGROUND_TONES,
    BOUNCE_HEIGHT,
    BOUNCE_PERIOD,
    COLORS,
    DOT_RADIUS,
    GROW_RANGE,
    GROW_RATE,
    OBJECT_SPEED,
    PAN_SPEED,
    PATTERN_CELL,
    PATTERN_TONES,
    SHAPES,
    SIZES,
    SPIN_RATE,
    TRAIL_WIDTH,
    WALL_COLOR,
    WALL_WIDTH,
    ZOOM_RANGE,
    ZOOM_RATE,
)

MIN_SIDE, MAX_SIDE = 16, 1920
MIN_FPS, MAX_FPS = 1.0, 60.0
MAX_SECONDS = 120.0
EVENT_CLOCK = 240.0  # Hz: contact and eating times are found on this grid, independent of fps
TRAIL_CLOCK = 120.0  # Hz: trails are capsules between path samples on this grid
MAX_ARRAY_BYTES = 4 << 30  # `render` refuses more; stream with `iter_render` instead


@dataclass
class ObjectTruth:
    index: int  # position in scene.objects
    shape: str
    color: str  # current color name (changes on contact)
    size: str
    center: tuple[float, float]  # geometric centre (x, y) in pixels, even when hidden
    radius: float  # current radius in pixels (growth and zoom included)
    angle: float  # radians
    centroid: tuple[float, float] | None  # centroid of the visible mask; None when hidden
    visible: float  # visible fraction of the object's own area (0 behind the wall)
    mask: np.ndarray | None = None  # bool [H, W] of visible pixels (None when masks=False)

    def to_json(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "mask"}
        d["rgb"] = list(COLORS[self.color])
        return d


@dataclass
class FrameTruth:
    time: float
    camera_offset: tuple[float, float]  # content shift (dx, dy) in pixels from the pan
    zoom: float  # scale of the view about the frame centre (1 = none)
    objects: list[ObjectTruth]
    dots: list[tuple[float, float]] = field(default_factory=list)  # dots not yet eaten

    def to_json(self) -> dict:
        return {
            "time": self.time,
            "camera_offset": list(self.camera_offset),
            "zoom": self.zoom,
            "objects": [o.to_json() for o in self.objects],
            "dots": [list(d) for d in self.dots],
        }


@dataclass
class Rendered:
    frames: np.ndarray  # uint8 [T, H, W, 3]
    truth: list[FrameTruth]
    fps: float
    layout: Layout

    def truth_json(self) -> dict:
        return {"fps": self.fps, **self.layout.to_json(), "frames": [t.to_json() for t in self.truth]}


# ---------------------------------------------------------------------------------------
# Layout: everything the caption leaves open, drawn once from the seed


@dataclass
class Body:
    """One object with every choice resolved, in pixels."""

    spec: ObjectSpec
    shape: str
    color: str
    motion: str  # resolved: None -> "still", a wall-crosser without motion -> left/right
    radius: float
    start: np.ndarray  # (x, y) at t = 0, before zoom
    velocity: np.ndarray  # own velocity (px/s) for linear motions
    angle0: float


@dataclass
class Layout:
    scene: Scene
    width: int
    height: int
    seed: int
    tone: str
    pattern_phase: tuple[float, float]
    bodies: list[Body]
    wall: tuple[float, float] | None  # (x0, x1) of the wall band
    dots: np.ndarray  # (N, 2) dot centres
    dot_radius: float
    dot_color: str | None
    dot_eaten: np.ndarray  # (N,) time each dot is eaten (inf = never)
    contact_time: float  # when the contact object changes color (inf = never)

    @property
    def short(self) -> int:
        return min(self.width, self.height)

    @property
    def content_velocity(self) -> float:
        """Horizontal shift of everything under a pan: the camera pans left, content moves right."""
        cam = self.scene.camera
        return {"pan left": 1.0, "pan right": -1.0}.get(cam, 0.0) * PAN_SPEED * self.short

    def zoom(self, t: np.ndarray) -> np.ndarray:
        cam = self.scene.camera
        if cam not in ("zoom in", "zoom out"):
            return np.ones_like(t)
        sign = 1.0 if cam == "zoom in" else -1.0
        return np.exp(sign * _pingpong(ZOOM_RATE * t, math.log(ZOOM_RANGE)))

    def camera_offset(self, t: float) -> tuple[float, float]:
        return (self.content_velocity * t, 0.0)

    def state(self, i: int, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, radius, angle) of body i at times t, in screen pixels (zoom applied)."""
        b = self.bodies[i]
        t = np.asarray(t, dtype=np.float64)
        r = b.radius * _growth(b.motion, t)
        x, y = _unreflected(b, t, self.content_velocity, self.height)
        x = _reflect(x, b.radius, self.width - b.radius)
        if b.motion != "bounces":
            y = _reflect(y, b.radius, self.height - b.radius)
        angle = b.angle0 + (SPIN_RATE * t if b.motion == "spins" else 0.0)
        s = self.zoom(t)
        cx, cy = self.width / 2, self.height / 2
        return cx + s * (x - cx), cy + s * (y - cy), r * s, np.broadcast_to(angle, t.shape)

    def color_at(self, i: int, t: float) -> str:
        b = self.bodies[i]
        if b.spec.turns is not None and t >= self.contact_time:
            return b.spec.turns
        return b.color

    def to_json(self) -> dict:
        return {
            "width": self.width,
            "height": self.height,
            "seed": self.seed,
            "background": {"tone": self.tone, "pattern": self.scene.background.pattern},
            "camera": self.scene.camera,
            "wall": list(self.wall) if self.wall else None,
            "contact_time": None if math.isinf(self.contact_time) else self.contact_time,
            "dots": {
                "color": self.dot_color,
                "radius": self.dot_radius,
                "centers": self.dots.tolist(),
                "eaten_at": [None if math.isinf(e) else float(e) for e in self.dot_eaten],
            },
            "objects": [
                {"shape": b.shape, "color": b.color, "size": b.spec.size, "motion": b.motion}
                for b in self.bodies
            ],
        }


def _pingpong(u: np.ndarray, top: float) -> np.ndarray:
    """0 → top → 0 → ... at unit slope: growth and zoom reverse instead of exploding on long clips."""
    m = np.mod(u, 2 * top)
    return np.where(m <= top, m, 2 * top - m)


def _reflect(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Fold an unbounded coordinate into [lo, hi]: elastic bounces off the frame edges."""
    span = max(hi - lo, 1e-9)
    m = np.mod(x - lo, 2 * span)
    return lo + np.where(m <= span, m, 2 * span - m)


def _growth(motion: str, t: np.ndarray) -> np.ndarray:
    if motion == "grows":
        return np.exp(_pingpong(GROW_RATE * t, math.log(GROW_RANGE)))
    if motion == "shrinks":
        return np.exp(-_pingpong(GROW_RATE * t, math.log(GROW_RANGE)))
    return np.ones_like(t)


def _unreflected(b: Body, t: np.ndarray, content_vx: float, height: int) -> tuple[np.ndarray, np.ndarray]:
    x = b.start[0] + (b.velocity[0] + content_vx) * t
    if b.motion == "bounces":
        floor = height - b.radius
        drop = floor - b.start[1]
        g = 8 * drop / BOUNCE_PERIOD**2  # falls `drop` pixels in half a period
        tau = np.mod(t + BOUNCE_PERIOD / 2, BOUNCE_PERIOD) - BOUNCE_PERIOD / 2
        y = floor - drop + 0.5 * g * tau**2
    else:
        y = b.start[1] + b.velocity[1] * t
    return x, np.broadcast_to(y, np.shape(t)).astype(np.float64)


def _velocity(motion: str, width: int, height: int) -> np.ndarray:
    v = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}.get(motion, (0, 0))
    return np.array([v[0] * OBJECT_SPEED * width, v[1] * OBJECT_SPEED * height], dtype=np.float64)


def _start_range(v: float, r: float, extent: float, reach: float) -> tuple[float, float]:
    """Starts from which `reach` seconds of motion at speed v stay clear of the far edge."""
    lo, hi = r, extent - r
    if v > 0:
        hi = max(lo, hi - v * reach)
    elif v < 0:
        lo = min(hi, lo - v * reach)
    return lo, hi


def make_layout(scene: Scene, width: int, height: int, seed: int) -> Layout:
    """Resolve every choice the caption left open. Draws from `seed` in a fixed order, in
    units of the frame, so one seed gives the same composition at every resolution."""
    rng = np.random.default_rng(seed)
    short = min(width, height)
    specs = scene.objects
    used = {c for o in specs for c in (o.color, o.trail, o.eats, o.turns) if c}
    free = [c for c in COLORS if c not in used] or list(COLORS)
    free = list(rng.permutation(free))
    tone = scene.background.tone or str(rng.choice(list(BACKGROUND_TONES)))
    phase = (float(rng.uniform(0, 2)), float(rng.uniform(0, 2)))

    bodies = []
    for spec in specs:
        color = spec.color or (free.pop(0) if free else str(rng.choice(list(COLORS))))
        shape = spec.shape or str(rng.choice(SHAPES))
        motion = spec.motion or (str(rng.choice(["left", "right"])) if spec.behind_wall else "still")
        bodies.append(
            Body(
                spec=spec,
                shape=shape,
                color=color,
                motion=motion,
                radius=SIZES[spec.size] * short,
                start=np.zeros(2),
                velocity=_velocity(motion, width, height),
                angle0=0.0,
            )
        )

    wall = None
    crossers = [b for b in bodies if b.spec.behind_wall]
    if crossers:
        w = WALL_WIDTH * max(b.radius for b in crossers)
        wall = (width / 2 - w / 2, width / 2 + w / 2)

    layout = Layout(
        scene=scene,
        width=width,
        height=height,
        seed=seed,
        tone=tone,
        pattern_phase=phase,
        bodies=bodies,
        wall=wall,
        dots=np.zeros((0, 2)),
        dot_radius=DOT_RADIUS * short,
        dot_color=None,
        dot_eaten=np.zeros(0),
        contact_time=math.inf,
    )
    _place(layout, rng)
    _place_dots(layout)
    _time_contact(layout)
    return layout


def _random_start(layout: Layout, b: Body, rng: np.random.Generator) -> np.ndarray:
    W, H = layout.width, layout.height
    vx = b.velocity[0] + layout.content_velocity
    margin = b.radius * (GROW_RANGE if b.motion == "grows" else 1.0)
    reach = 2.0  # WORLD.md: the first 2 seconds show the stated motion
    xlo, xhi = _start_range(vx, margin, W, reach)
    if b.spec.behind_wall and layout.wall is not None and b.motion in ("left", "right"):
        # Start fully visible on the side the object comes from, close to the wall.
        gap = rng.uniform(0.01, 0.05) * layout.short
        x = layout.wall[0] - b.radius - gap if b.motion == "right" else layout.wall[1] + b.radius + gap
        xlo = xhi = float(np.clip(x, b.radius, W - b.radius))
    x = rng.uniform(xlo, xhi)
    if layout.wall is not None and not b.spec.behind_wall:
        # Keep other objects out from behind the wall at t = 0 when there is room.
        x0, x1 = layout.wall[0] - margin, layout.wall[1] + margin
        if x0 < x < x1:
            side = [s for s in ((xlo, x0), (x1, xhi)) if s[1] > s[0]]
            if side:
                lo, hi = side[int(rng.integers(len(side)))]
                x = rng.uniform(lo, hi)
    if b.motion == "bounces":
        floor = H - b.radius
        y = floor - min(BOUNCE_HEIGHT * H, max(floor - b.radius, 0.0))
    else:
        ylo, yhi = _start_range(b.velocity[1], margin, H, reach)
        y = rng.uniform(ylo, yhi)
    return np.array([x, y])


def _overlap_cost(layout: Layout, indices: list[int]) -> float:
    """How long (in samples over the first 2.5 s) any two objects overlap: rejection target."""
    t = np.linspace(0.0, 2.5, 21)
    states = [layout.state(i, t) for i in indices]
    cost = 0.0
    for a in range(len(states)):
        for c in range(a + 1, len(states)):
            xa, ya, ra, _ = states[a]
            xc, yc, rc, _ = states[c]
            cost += float(np.sum(np.hypot(xa - xc, ya - yc) < 1.1 * (ra + rc)))
    return cost


def _place(layout: Layout, rng: np.random.Generator) -> None:
    bodies = layout.bodies
    fixed: set[int] = set()
    ci = layout.scene.contact
    if ci is not None:
        other = next(i for i in range(len(bodies)) if i != ci)
        _place_contact(layout, ci, other, rng)
        fixed = {ci, other}
    free = [i for i in range(len(bodies)) if i not in fixed]
    best, best_cost = None, math.inf
    for _ in range(12):
        for i in free:
            bodies[i].start = _random_start(layout, bodies[i], rng)
        cost = _overlap_cost(layout, list(range(len(bodies))))
        if cost < best_cost:
            best, best_cost = [bodies[i].start.copy() for i in free], cost
        if cost == 0:
            break
    for i, start in zip(free, best or []):
        bodies[i].start = start


def _place_contact(layout: Layout, a: int, b: int, rng: np.random.Generator) -> None:
    """Place a and b so they meet: both reach a meeting point M at time tm."""
    A, B = layout.bodies[a], layout.bodies[b]
    W, H = layout.width, layout.height
    cv = layout.content_velocity
    for attempt in range(40):
        tm = rng.uniform(0.8, 1.3)
        M = np.array([rng.uniform(0.25, 0.75) * W, rng.uniform(0.25, 0.75) * H])
        A.start, B.start = np.zeros(2), np.zeros(2)
        if A.motion == "bounces" or B.motion == "bounces":
            A.start = _random_start(layout, A, rng) if A.motion == "bounces" else A.start
            B.start = _random_start(layout, B, rng) if B.motion == "bounces" else B.start
        da = np.array(_unreflected(A, np.array(tm), cv, H), dtype=np.float64) - A.start
        db = np.array(_unreflected(B, np.array(tm), cv, H), dtype=np.float64) - B.start
        pa, pb = M - da, M - db
        if A.motion == "bounces":
            pa = np.array([M[0] - da[0], A.start[1]])
        if B.motion == "bounces":
            pb = np.array([M[0] - db[0], B.start[1]])
        if np.allclose(da, db):
            # No relative motion: start them side by side, already touching.
            pa = M - np.array([0.95 * (A.radius + B.radius), 0.0])
            pb = M
        ok = all(
            p[0] >= body.radius
            and p[0] <= W - body.radius
            and p[1] >= body.radius
            and p[1] <= H - body.radius
            for p, body in ((pa, A), (pb, B))
        )
        if ok or attempt == 39:
            A.start = np.clip(pa, A.radius, [W - A.radius, H - A.radius])
            B.start = np.clip(pb, B.radius, [W - B.radius, H - B.radius])
            return


def _place_dots(layout: Layout) -> None:
    eaters = [i for i, b in enumerate(layout.bodies) if b.spec.eats]
    if not eaters:
        return
    i = eaters[0]
    b = layout.bodies[i]
    # Dots lie on the eater's path, the first one far enough ahead not to be eaten at t = 0.
    speed = float(np.hypot(*b.velocity)) or OBJECT_SPEED * layout.short
    lead = (b.radius + layout.dot_radius) / speed
    times = np.array([0.35, 0.75, 1.15, 1.55]) + lead
    x, y, _, _ = layout.state(i, times)
    x0, y0, r0, _ = layout.state(i, np.array([0.0]))
    far = np.hypot(x - x0, y - y0) > r0 + layout.dot_radius + 1.0
    layout.dots = np.stack([x, y], axis=1)[far]
    layout.dot_color = b.spec.eats
    clock = _event_clock(layout)
    ex, ey, er, _ = layout.state(i, clock)
    dist = np.hypot(ex[:, None] - layout.dots[None, :, 0], ey[:, None] - layout.dots[None, :, 1])
    touched = dist <= er[:, None] + layout.dot_radius
    first = np.argmax(touched, axis=0)
    layout.dot_eaten = np.where(touched.any(axis=0), clock[first], np.inf)


def _event_clock(layout: Layout) -> np.ndarray:
    # Events are only searched for within the longest clip allowed, on a fixed clock.
    return np.arange(0.0, MAX_SECONDS + 1e-9, 1.0 / EVENT_CLOCK)


def _time_contact(layout: Layout) -> None:
    ci = layout.scene.contact
    if ci is None:
        return
    # "When they touch": the two objects placed to meet (the first other object is the partner).
    partner = next(i for i in range(len(layout.bodies)) if i != ci)
    clock = _event_clock(layout)
    xa, ya, ra, _ = layout.state(ci, clock)
    xb, yb, rb, _ = layout.state(partner, clock)
    hit = np.hypot(xa - xb, ya - yb) <= ra + rb
    if hit.any():
        layout.contact_time = float(clock[int(np.argmax(hit))])


# ---------------------------------------------------------------------------------------
# Rasterisation


def _filtered_square_wave(u: np.ndarray, cell: float, footprint: float) -> np.ndarray:
    """Box filter of a ±1 square wave (half-period `cell`) over a pixel of width `footprint`:
    the difference of its antiderivative, a triangle wave — exact anti-aliasing."""

    def antiderivative(v: np.ndarray) -> np.ndarray:
        return cell - np.abs(np.mod(v, 2 * cell) - cell)

    return (antiderivative(u + footprint / 2) - antiderivative(u - footprint / 2)) / footprint


def _background(layout: Layout, t: float) -> np.ndarray:
    W, H = layout.width, layout.height
    base = np.array(BACKGROUND_TONES[layout.tone], dtype=np.float32)
    pattern = layout.scene.background.pattern
    if pattern == "plain":
        return np.broadcast_to(base, (H, W, 3)).copy()
    alt = np.array(PATTERN_TONES[layout.tone], dtype=np.float32)
    s = float(layout.zoom(np.array(t)))
    cell = PATTERN_CELL * layout.short
    dx, dy = layout.camera_offset(t)
    px, py = layout.pattern_phase
    # Pattern coordinates of pixel centres: undo zoom about the centre, then the pan.
    u = (np.arange(W) + 0.5 - W / 2) / s + W / 2 - dx + px * cell
    wave = _filtered_square_wave(u, cell, 1.0 / s)[None, :]
    if pattern == "checkered":
        v = (np.arange(H) + 0.5 - H / 2) / s + H / 2 - dy + py * cell
        wave = wave * _filtered_square_wave(v, cell, 1.0 / s)[:, None]
    else:
        wave = np.broadcast_to(wave, (H, W))
    weight = ((1.0 + wave) * 0.5).astype(np.float32)[..., None]  # 1 = base tone
    return alt + (base - alt) * weight


def _box(cx: float, cy: float, reach: float, W: int, H: int) -> tuple[slice, slice] | None:
    x0, x1 = max(int(math.floor(cx - reach)), 0), min(int(math.ceil(cx + reach)) + 1, W)
    y0, y1 = max(int(math.floor(cy - reach)), 0), min(int(math.ceil(cy + reach)) + 1, H)
    if x0 >= x1 or y0 >= y1:
        return None
    return slice(y0, y1), slice(x0, x1)


def _sdf(shape: str, qx: np.ndarray, qy: np.ndarray, r: float) -> np.ndarray:
    """Signed distance (px, negative inside) in the object's frame."""
    if shape == "circle":
        return np.hypot(qx, qy) - r
    if shape == "square":
        ax, ay = np.abs(qx) - r, np.abs(qy) - r
        outside = np.hypot(np.maximum(ax, 0), np.maximum(ay, 0))
        return outside + np.minimum(np.maximum(ax, ay), 0)
    # Equilateral triangle, circumradius r, apex up: the max of three edge half-planes (the
    # inradius is r/2). Exact along edges, slightly rounded off at the tips — fine for AA.
    s3 = math.sqrt(3) / 2
    d = np.maximum(qy, np.maximum(s3 * qx - 0.5 * qy, -s3 * qx - 0.5 * qy))  # outward edge normals
    return d - r / 2


def _coverage(shape: str, cx: float, cy: float, r: float, angle: float, W: int, H: int):
    box = _box(cx, cy, r * 1.5 + 2, W, H)
    if box is None:
        return None, None
    ys, xs = box
    qy = (np.arange(ys.start, ys.stop) + 0.5 - cy)[:, None]
    qx = (np.arange(xs.start, xs.stop) + 0.5 - cx)[None, :]
    if angle:
        c, s = math.cos(angle), math.sin(angle)
        qx, qy = c * qx + s * qy, -s * qx + c * qy
    cov = np.clip(0.5 - _sdf(shape, qx, qy, r), 0.0, 1.0).astype(np.float32)
    return box, cov


def _capsule(canvas: np.ndarray, p: np.ndarray, q: np.ndarray, w: float) -> None:
    """Max-accumulate the coverage of a capsule (segment p→q, radius w) into `canvas`."""
    H, W = canvas.shape
    lo, hi = np.minimum(p, q) - w - 2, np.maximum(p, q) + w + 2
    x0, x1 = max(int(lo[0]), 0), min(int(math.ceil(hi[0])), W)
    y0, y1 = max(int(lo[1]), 0), min(int(math.ceil(hi[1])), H)
    if x0 >= x1 or y0 >= y1:
        return
    px = np.arange(x0, x1) + 0.5
    py = (np.arange(y0, y1) + 0.5)[:, None]
    d = q - p
    L2 = float(d @ d)
    h = np.clip(((px - p[0]) * d[0] + (py - p[1]) * d[1]) / L2, 0, 1) if L2 > 0 else 0.0
    dist = np.hypot(px - p[0] - h * d[0], py - p[1] - h * d[1])
    cov = np.clip(w + 0.5 - dist, 0.0, 1.0)
    np.maximum(canvas[y0:y1, x0:x1], cov, out=canvas[y0:y1, x0:x1])


def _blend(img: np.ndarray, box, cov: np.ndarray, rgb) -> None:
    region = img[box]
    c = cov[..., None]
    region += (np.asarray(rgb, dtype=np.float32) - region) * c


class _Trails:
    """Painted trails: capsules along each painter's path on a fixed clock, accumulated once."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.painters = [i for i, b in enumerate(layout.bodies) if b.spec.trail]
        self.canvas = {i: np.zeros((layout.height, layout.width), np.float32) for i in self.painters}
        self.done = 0  # clock ticks already painted

    def at(self, t: float) -> dict[int, np.ndarray]:
        if not self.painters:
            return {}
        ticks = int(math.floor(t * TRAIL_CLOCK + 1e-9))
        out = {}
        for i in self.painters:
            width = TRAIL_WIDTH * self.layout.bodies[i].radius
            if ticks > self.done:
                times = np.arange(self.done, ticks + 1) / TRAIL_CLOCK
                x, y, _, _ = self.layout.state(i, times)
                pts = np.stack([x, y], 1)
                for k in range(len(pts) - 1):
                    _capsule(self.canvas[i], pts[k], pts[k + 1], width)
            canvas = self.canvas[i].copy()
            x, y, _, _ = self.layout.state(i, np.array([ticks / TRAIL_CLOCK, t]))
            _capsule(canvas, np.array([x[0], y[0]]), np.array([x[1], y[1]]), width)
            out[i] = canvas
        self.done = max(self.done, ticks)
        return out


def _frame(layout: Layout, t: float, trails: _Trails, masks: bool) -> tuple[np.ndarray, FrameTruth]:
    W, H = layout.width, layout.height
    img = _background(layout, t)
    for i, canvas in trails.at(t).items():
        _blend(img, (slice(None), slice(None)), canvas, COLORS[layout.bodies[i].spec.trail])
    alive = [tuple(map(float, d)) for d, e in zip(layout.dots, layout.dot_eaten) if t < e]
    for d in alive:
        box, cov = _coverage("circle", d[0], d[1], layout.dot_radius, 0.0, W, H)
        if box is not None:
            _blend(img, box, cov, COLORS[layout.dot_color])

    owner = np.full((H, W), -1, np.int8)  # who is visible at each pixel (coverage >= 0.5)
    objects = []
    for i, b in enumerate(layout.bodies):
        x, y, r, a = (float(v[0]) for v in layout.state(i, np.array([t])))
        color = layout.color_at(i, t)
        box, cov = _coverage(b.shape, x, y, r, a, W, H)
        if box is not None:
            _blend(img, box, cov, COLORS[color])
            owner[box][cov >= 0.5] = i
        objects.append(
            ObjectTruth(
                index=i, shape=b.shape, color=color, size=b.spec.size, center=(x, y), radius=r, angle=a,
                centroid=None, visible=0.0,
            )
        )  # fmt: skip
    if layout.wall is not None:
        x0, x1 = layout.wall
        cols = np.arange(W) + 0.5
        wall_cov = np.clip(np.minimum(cols - x0 + 0.5, x1 - cols + 0.5), 0.0, 1.0).astype(np.float32)
        box = (slice(None), slice(None))
        _blend(img, box, np.broadcast_to(wall_cov[None, :], (H, W)), WALL_COLOR)
        owner[:, wall_cov >= 0.5] = -2

    for o in objects:
        visible = owner == o.index
        n = int(visible.sum())
        area = _area(o.shape, o.radius)
        o.visible = float(min(n / area, 1.0)) if area > 0 else 0.0
        if n:
            yy, xx = np.nonzero(visible)
            o.centroid = (float(xx.mean() + 0.5), float(yy.mean() + 0.5))
        if masks:
            o.mask = visible
    frame = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    truth = FrameTruth(
        time=t, camera_offset=layout.camera_offset(t), zoom=float(layout.zoom(np.array(t))),
        objects=objects, dots=alive,
    )  # fmt: skip
    return frame, truth


def _area(shape: str, r: float) -> float:
    return {"circle": math.pi, "square": 4.0, "triangle": 3 * math.sqrt(3) / 4}[shape] * r * r


def frame_count(fps: float, seconds: float | None, num_frames: int | None) -> int:
    """Validate fps and duration; the number of frames (frame i is at t = i / fps)."""
    if not isinstance(fps, (int, float)) or not MIN_FPS <= fps <= MAX_FPS:
        raise UserError(f"fps must be between {MIN_FPS:g} and {MAX_FPS:g}, got {fps!r}")
    if num_frames is not None:
        limit = int(round(MAX_SECONDS * fps))
        if not isinstance(num_frames, (int, np.integer)) or not 1 <= num_frames <= limit:
            raise UserError(f"num_frames must be 1..{limit} at {fps:g} fps, got {num_frames!r}")
        return int(num_frames)
    if seconds is None:
        raise UserError("give the clip length: seconds or num_frames")
    if not isinstance(seconds, (int, float)) or not 0 < seconds <= MAX_SECONDS:
        raise UserError(f"seconds must be in (0, {MAX_SECONDS:g}], got {seconds!r}")
    return max(1, int(round(seconds * fps)))


def check_size(width: int, height: int) -> None:
    for name, v in (("width", width), ("height", height)):
        if not isinstance(v, (int, np.integer)) or not MIN_SIDE <= v <= MAX_SIDE:
            raise UserError(f"{name} must be an integer from {MIN_SIDE} to {MAX_SIDE} px, got {v!r}")


def iter_render(
    scene: Scene,
    *,
    width: int,
    height: int,
    fps: float,
    seconds: float | None = None,
    num_frames: int | None = None,
    seed: int = 0,
    masks: bool = True,
) -> tuple[Layout, int, Iterator[tuple[np.ndarray, FrameTruth]]]:
    """Validate, lay out, and return (layout, frame count, a lazy iterator of frames): for clips
    too large to hold in memory (a minute at 1080p)."""
    check_size(width, height)
    count = frame_count(fps, seconds, num_frames)
    layout = make_layout(scene, int(width), int(height), int(seed))

    def frames() -> Iterator[tuple[np.ndarray, FrameTruth]]:
        trails = _Trails(layout)
        for k in range(count):
            yield _frame(layout, k / fps, trails, masks)

    return layout, count, frames()


def render(
    scene: Scene,
    *,
    width: int,
    height: int,
    fps: float,
    seconds: float | None = None,
    num_frames: int | None = None,
    seed: int = 0,
    masks: bool = True,
) -> Rendered:
    """Render `scene`: uint8 frames [T, H, W, 3] and per-frame ground truth."""
    check_size(width, height)
    count = frame_count(fps, seconds, num_frames)
    if count * width * height * 3 > MAX_ARRAY_BYTES:
        raise UserError(
            f"{count} frames of {width}x{height} do not fit in memory as one array; use iter_render"
        )
    layout, count, it = iter_render(
        scene, width=width, height=height, fps=fps, num_frames=count, seed=seed, masks=masks
    )
    frames = np.empty((count, height, width, 3), np.uint8)
    truth = []
    for k, (frame, ft) in enumerate(it):
        frames[k] = frame
        truth.append(ft)
    return Rendered(frames=frames, truth=truth, fps=float(fps), layout=layout)
