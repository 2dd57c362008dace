"""Captions: the writer's output always parses back to the scene it describes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cinegen.errors import UserError
from cinegen.world import Background, ObjectSpec, Scene, parse_caption, random_scene, write_caption
from cinegen.world.captions import _FRAMES

seeds = st.integers(0, 2**32 - 1)


@settings(max_examples=300, deadline=None)
@given(scene_seed=seeds, caption_seed=seeds, events=st.booleans(), camera=st.booleans(), wall=st.booleans())
def test_written_caption_parses_to_same_scene(scene_seed, caption_seed, events, camera, wall):
    scene = random_scene(np.random.default_rng(scene_seed), events=events, camera=camera, wall=wall)
    caption = write_caption(scene, np.random.default_rng(caption_seed))
    assert parse_caption(caption) == scene, caption


def test_writer_varies_surface_form():
    scene = random_scene(np.random.default_rng(0))
    captions = {write_caption(scene, np.random.default_rng(s)) for s in range(40)}
    assert len(captions) >= 30
    assert len(_FRAMES) >= 30


@pytest.mark.parametrize(
    "caption, expected",
    [
        (
            "a big red ball moves right on a checkered white background",
            Scene((ObjectSpec("circle", "red", "big", "right"),), Background("white", "checkered")),
        ),
        (
            "On a black background, a small blue square slides up while the camera pans left.",
            Scene((ObjectSpec("square", "blue", "small", "up"),), Background("black"), camera="pan left"),
        ),
        (
            "two objects: a yellow triangle moving left and a green circle moving right",
            Scene(
                (
                    ObjectSpec("triangle", "yellow", motion="left"),
                    ObjectSpec("circle", "green", motion="right"),
                )
            ),
        ),
        (
            "a green box moves right and a red ball moves left; when they touch, the box turns purple",
            Scene(
                (
                    ObjectSpec("square", "green", motion="right", turns="purple"),
                    ObjectSpec("circle", "red", motion="left"),
                )
            ),
        ),
        (
            "Leaving an orange trail, a large blue dot drifts downward over a grey striped background",
            Scene(
                (ObjectSpec("circle", "blue", "big", "down", trail="orange"),), Background("gray", "striped")
            ),
        ),
        (
            "a purple block eats the small yellow dots and passes behind a wall",
            Scene((ObjectSpec("square", "purple", eats="yellow", behind_wall=True),)),
        ),
        ("a ball", Scene((ObjectSpec("circle"),))),
    ],
)
def test_parse_examples(caption, expected):
    assert parse_caption(caption) == expected


@pytest.mark.parametrize(
    "caption, needle",
    [
        ("a red ball moonwalks left", "unknown word 'moonwalks'"),
        ("", "empty"),
        ("on a white background", "names no object"),
        ("a red blue ball", "two values"),
        ("a red ball moves left and moves right", "two values"),
        ("two objects: a red ball", "says 2 objects"),
        ("a red ball; when they touch, the ball turns blue", "two objects"),
        ("a ball, a box, a triangle and a dot", "1 to 3 objects"),
        ("a red ball on a white black background", "two background tones"),
        ("a big red", "describes no object"),
    ],
)
def test_parse_errors_are_one_line(caption, needle):
    with pytest.raises(UserError) as err:
        parse_caption(caption)
    message = str(err.value)
    assert needle in message and "\n" not in message


def test_unknown_word_lists_allowed_words():
    with pytest.raises(UserError, match="allowed words: .*ball.*red"):
        parse_caption("a red ball zigzags")


def test_simple_scenes_have_no_events_or_camera():
    rng = np.random.default_rng(1)
    for _ in range(200):
        scene = random_scene(rng, max_objects=1, events=False, camera=False, wall=False)
        assert len(scene.objects) == 1 and scene.camera is None and not scene.wall
        o = scene.objects[0]
        assert o.trail is None and o.eats is None and o.turns is None
