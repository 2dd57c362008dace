"""The procedural world (WORLD.md): scene spec, captions, renderer and pixel detector."""

from cinegen.world.captions import allowed_words, parse_caption, write_caption
from cinegen.world.render import FrameTruth, Layout, ObjectTruth, Rendered, iter_render, render
from cinegen.world.scene import Background, ObjectSpec, Scene, random_scene
from cinegen.world.vocab import (
    BACKGROUND_TONES,
    CAMERA_MOTIONS,
    COLORS,
    MOTIONS,
    PATTERN_TONES,
    PATTERNS,
    SHAPES,
    SIZES,
    WALL_COLOR,
)

__all__ = [
    "BACKGROUND_TONES",
    "CAMERA_MOTIONS",
    "COLORS",
    "MOTIONS",
    "PATTERNS",
    "PATTERN_TONES",
    "SHAPES",
    "SIZES",
    "WALL_COLOR",
    "Background",
    "FrameTruth",
    "Layout",
    "ObjectSpec",
    "ObjectTruth",
    "Rendered",
    "Scene",
    "allowed_words",
    "iter_render",
    "parse_caption",
    "random_scene",
    "render",
    "write_caption",
]
