"""Scene spec: what a caption says, nothing more.

A `Scene` holds only what a caption states (shapes, colors, sizes, motions, events,
background, camera). Positions, speeds and unstated choices (a color the caption left out)
are drawn by the renderer from its seed, so `parse_caption(write_caption(s)) == s` holds
exactly and one caption renders to many clips.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cinegen.errors import UserError
from cinegen.world.vocab import (
    BACKGROUND_TONES,
    CAMERA_MOTIONS,
    COLORS,
    DEFAULT_SIZE,
    LINEAR_MOTIONS,
    MAX_OBJECTS,
    MOTIONS,
    PATTERNS,
    SHAPES,
    SIZES,
)


def _check(value: str | None, allowed, what: str, optional: bool = True) -> None:
    if value is None and optional:
        return
    if value not in allowed:
        raise UserError(f"unknown {what} {value!r}; allowed: {', '.join(allowed)}")


@dataclass(frozen=True)
class ObjectSpec:
    """One object. `None` means the caption did not say (the renderer picks from its seed)."""

    shape: str | None = None
    color: str | None = None
    size: str = DEFAULT_SIZE
    motion: str | None = None  # one of MOTIONS; None renders as still but is not judged
    trail: str | None = None  # painting: leaves a trail of this color
    eats: str | None = None  # eating: eats the small dots of this color
    behind_wall: bool = False  # occlusion: passes behind the wall
    turns: str | None = None  # contact: turns this color when it touches another object

    def __post_init__(self) -> None:
        _check(self.shape, SHAPES, "shape")
        _check(self.color, COLORS, "color")
        _check(self.size, SIZES, "size", optional=False)
        _check(self.motion, MOTIONS, "motion")
        _check(self.trail, COLORS, "trail color")
        _check(self.eats, COLORS, "dot color")
        _check(self.turns, COLORS, "contact color")


@dataclass(frozen=True)
class Background:
    tone: str | None = None  # None: the renderer picks one
    pattern: str = "plain"

    def __post_init__(self) -> None:
        _check(self.tone, BACKGROUND_TONES, "background tone")
        _check(self.pattern, PATTERNS, "background pattern", optional=False)


@dataclass(frozen=True)
class Scene:
    objects: tuple[ObjectSpec, ...]
    background: Background = field(default_factory=Background)
    camera: str | None = None  # one of CAMERA_MOTIONS, None = static

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(self.objects))
        if not 1 <= len(self.objects) <= MAX_OBJECTS:
            raise UserError(f"a scene has 1 to {MAX_OBJECTS} objects, got {len(self.objects)}")
        _check(self.camera, CAMERA_MOTIONS, "camera motion")
        touching = [o for o in self.objects if o.turns is not None]
        if touching:
            if len(self.objects) < 2:
                raise UserError("a contact event ('when they touch ...') needs at least two objects")
            if len(touching) > 1:
                raise UserError("a scene has at most one contact event")
            shape = touching[0].shape
            if shape is None or sum(o.shape == shape for o in self.objects) != 1:
                raise UserError("the object that turns on contact must be the only one of its shape")

    @property
    def wall(self) -> bool:
        """The wall is drawn exactly when some object passes behind it."""
        return any(o.behind_wall for o in self.objects)

    @property
    def contact(self) -> int | None:
        """Index of the object that changes color on contact, if any."""
        return next((i for i, o in enumerate(self.objects) if o.turns is not None), None)


def random_scene(
    rng: np.random.Generator,
    *,
    max_objects: int = MAX_OBJECTS,
    events: bool = True,
    camera: bool = True,
    wall: bool = True,
) -> Scene:
    """A random scene; every field is stated, so its caption says everything shown.

    With `events`, `camera` and `wall` off it gives simple scenes (plain motions) for the
    first curriculum stage. All colors in a scene (objects, trails, dots, contact colors) are
    distinct, so the detector can tell every part apart by color alone.
    """
    if not 1 <= max_objects <= MAX_OBJECTS:
        raise UserError(f"max_objects must be 1..{MAX_OBJECTS}, got {max_objects}")
    n = int(rng.integers(1, max_objects + 1))
    colors = list(rng.permutation(list(COLORS)))
    shapes = [str(s) for s in rng.choice(SHAPES, size=n)]
    motions = [str(m) for m in rng.choice(MOTIONS, size=n)]
    extra: dict[int, dict] = {i: {} for i in range(n)}

    # At most one event kind per scene keeps captions readable and colors distinct.
    kinds = []
    if events:
        kinds += ["trail", "eat"] + (["contact"] if n >= 2 else [])
    if wall:
        kinds.append("wall")
    kind = str(rng.choice(kinds)) if kinds and rng.random() < 0.5 else None
    if kind == "trail" or kind == "eat":
        i = int(rng.integers(n))
        motions[i] = str(rng.choice([*LINEAR_MOTIONS, "bounces"]))
        extra[i]["trail" if kind == "trail" else "eats"] = str(colors[n])
    elif kind == "wall":
        i = int(rng.integers(n))
        motions[i] = str(rng.choice(["left", "right"]))
        extra[i]["behind_wall"] = True
    elif kind == "contact":
        # Two objects of different shapes converge; shape names the one that turns.
        a, b = 0, 1
        shapes[a], shapes[b] = (str(s) for s in rng.choice(SHAPES, size=2, replace=False))
        if n == 3 and shapes[2] in (shapes[a], shapes[b]):
            shapes[2] = next(s for s in SHAPES if s not in (shapes[a], shapes[b]))
        axis = [("right", "left"), ("right", "still"), ("still", "left"), ("down", "up"), ("down", "still")]
        motions[a], motions[b] = axis[int(rng.integers(len(axis)))]
        extra[a]["turns"] = str(colors[n])

    for i in range(n):
        if shapes[i] == "circle" and motions[i] == "spins":
            motions[i] = "grows"  # a spinning circle looks still: no caption should promise it
    objects = tuple(
        ObjectSpec(
            shape=shapes[i],
            color=str(colors[i]),
            size=str(rng.choice(list(SIZES))),
            motion=motions[i],
            **extra[i],
        )
        for i in range(n)
    )
    # Camera motion is only visible against a pattern; it is kept apart from events, whose
    # trails, dots and wall live in screen space.
    cam = None
    if camera and kind is None and rng.random() < 0.35:
        cam = str(rng.choice(CAMERA_MOTIONS))
    pattern = str(rng.choice(PATTERNS[1:])) if cam else str(rng.choice(PATTERNS))
    background = Background(tone=str(rng.choice(list(BACKGROUND_TONES))), pattern=pattern)
    return Scene(objects=objects, background=background, camera=cam)
