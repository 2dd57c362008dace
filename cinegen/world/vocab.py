"""The fixed vocabulary of the procedural world (WORLD.md).

The judge (`cinegen.world.detect`) depends on these exact values: change them only together
with WORLD.md, since every trained model and every stored score assumes them.
"""

from __future__ import annotations

RGB = tuple[int, int, int]

COLORS: dict[str, RGB] = {
    "red": (220, 40, 40),
    "green": (40, 180, 70),
    "blue": (40, 90, 220),
    "yellow": (240, 210, 40),
    "purple": (150, 60, 190),
    "orange": (245, 140, 30),
}

# Neutral tones only, so objects separate from the background by color alone.
BACKGROUND_TONES: dict[str, RGB] = {
    "white": (235, 235, 235),
    "gray": (128, 128, 128),
    "black": (25, 25, 25),
}
# The second tone of a checkered or striped background of each base tone.
PATTERN_TONES: dict[str, RGB] = {
    "white": (195, 195, 195),
    "gray": (168, 168, 168),
    "black": (65, 65, 65),
}
PATTERNS: tuple[str, ...] = ("plain", "checkered", "striped")
WALL_COLOR: RGB = (70, 70, 70)

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
# Radius as a fraction of the shorter frame side. For a square the radius is half its side,
# for a triangle the circumradius (so a triangle's area is ~41% of a circle's of equal size).
SIZES: dict[str, float] = {"small": 0.07, "medium": 0.10, "big": 0.14}
DEFAULT_SIZE = "medium"

MOTIONS: tuple[str, ...] = ("left", "right", "up", "down", "bounces", "still", "grows", "shrinks", "spins")
LINEAR_MOTIONS: tuple[str, ...] = ("left", "right", "up", "down")
CAMERA_MOTIONS: tuple[str, ...] = ("pan left", "pan right", "zoom in", "zoom out")

MAX_OBJECTS = 3

# Dynamics, in units of the frame (WORLD.md: "speed ≈ 30% of the frame per second").
OBJECT_SPEED = 0.3  # fraction of the frame extent along the motion axis, per second
# Pan speed as a fraction of the shorter side per second. Small enough that an object moving
# with the pan still shows 2 s of its stated motion (2*(0.3W + 0.06L) + 2*0.14L <= W), and that a
# pan between two frames at 1 fps stays under half a pattern period, so phase correlation works.
PAN_SPEED = 0.06
ZOOM_RATE = 0.15  # log-scale per second
ZOOM_RANGE = 1.4  # zoom ping-pongs between 1 and 1.4 (in) or 1/1.4 (out), so long clips stay sane
GROW_RATE = 0.3  # log-radius per second for grows / shrinks
GROW_RANGE = 1.7  # growth ping-pongs between 1 and 1.7 (or 1/1.7)
SPIN_RATE = 0.6  # rad/s; under pi/4 per frame at 1 fps, so a square's 90° symmetry does not alias
BOUNCE_PERIOD = 1.0  # seconds between floor hits for `bounces`
BOUNCE_HEIGHT = 0.45  # drop height as a fraction of frame height
PATTERN_CELL = 0.125  # checker cell / stripe width as a fraction of the shorter side
DOT_RADIUS = 0.035  # dots to eat: half a small object's radius, so the detector tells them apart
DOT_TIMES: tuple[float, ...] = (0.45, 0.9, 1.35, 1.8)  # dots lie where the eater will be then
TRAIL_WIDTH = 0.5  # trail half-width as a fraction of the object's radius
WALL_WIDTH = 2.3  # wall width in radii of the largest object passing behind it
