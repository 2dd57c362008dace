"""Captions: a writer with varied templates and a parser for the world's whole grammar.

The parser is phrase-first: multi-word phrases (motions, events, camera, counts) are
rewritten into single tokens, then one left-to-right scan builds objects from
`[article] [size] [color] noun` and attaches each motion/event to the object it follows
(or, before the first object, to the first object). Background tone and pattern words
are never used for objects, so they are recognised anywhere. Any word left over that is
not a known filler is an error that lists the allowed words.
"""

from __future__ import annotations

import re

import numpy as np

from cinegen.errors import UserError
from cinegen.world.scene import Background, ObjectSpec, Scene
from cinegen.world.vocab import COLORS

SHAPE_WORDS: dict[str, str] = {
    "ball": "circle",
    "circle": "circle",
    "dot": "circle",
    "disc": "circle",
    "square": "square",
    "box": "square",
    "block": "square",
    "triangle": "triangle",
}
GENERIC_NOUNS = ("object", "shape", "thing")  # an object whose shape the caption leaves open
SIZE_WORDS: dict[str, str] = {
    "small": "small",
    "little": "small",
    "tiny": "small",
    "medium": "medium",
    "big": "big",
    "large": "big",
    "huge": "big",
}
TONE_WORDS: dict[str, str] = {"white": "white", "gray": "gray", "grey": "gray", "black": "black"}
PATTERN_WORDS: dict[str, str] = {
    "plain": "plain",
    "checkered": "checkered",
    "checkerboard": "checkered",
    "checked": "checkered",
    "striped": "striped",
    "stripes": "striped",
}
FILLERS = frozenset(
    """a an the one and while as on of in with it its there is are that which where here we see
    background camera scene video clip footage animation watch look simple set top front over
    against behind all shows show then also both vertical meanwhile at same time""".split()
)

_COLOR = "(" + "|".join(COLORS) + ")"
_SHAPE = "(" + "|".join(SHAPE_WORDS) + ")"
_DIR = r"(left|right|up|down)(?:wards?)?"
# (pattern, replacement) applied in order to the normalised caption. `§` marks a rewritten token.
_PHRASES: list[tuple[str, str]] = [
    (r"\bmedium sized\b", "medium"),
    (r"\b(two|three|2|3) (?:objects|shapes|things)\b", r"§count_\1"),
    # contact (scene level): "when they touch, the box turns red", "the box turns red when they touch"
    (
        rf"\b(?:when|once|as soon as) they (?:touch|meet|collide) (?:the )?{_SHAPE} (?:turns|becomes|changes to) {_COLOR}\b",
        r"§touch_\1_\2",
    ),
    (
        rf"\bthe {_SHAPE} (?:turns|becomes|changes to) {_COLOR} (?:when|once) they (?:touch|meet|collide)\b",
        r"§touch_\1_\2",
    ),
    (rf"\bon contact (?:the )?{_SHAPE} (?:turns|becomes|changes to) {_COLOR}\b", r"§touch_\1_\2"),
    # camera
    (rf"\b(?:is )?(?:pans|panning|pan) (?:to the )?{_DIR}", r"§cam_pan_\1"),
    (r"\b(?:is )?(?:zooms|zooming|zoom) (in|out)\b", r"§cam_zoom_\1"),
    # events (object level)
    (rf"\b(?:leaves|leaving|paints|painting|draws|drawing) (?:a|an) {_COLOR} trail\b", r"§trail_\1"),
    (
        rf"\b(?:eats|eating|gobbles|gobbling)(?: up)? (?:all )?(?:the )?(?:small |little |tiny )?{_COLOR} dots\b",
        r"§eats_\1",
    ),
    (
        r"\b(?:(?:passes|passing|goes|going|disappears|disappearing|moves|moving|slides|sliding) )?"
        r"behind (?:a|the) wall\b",
        "§wall",
    ),
    # motions
    (
        r"\b(?:moves|moving|move|slides|sliding|goes|going|travels|travelling|traveling|drifts|drifting"
        rf"|heads|heading|glides|gliding)(?: to the| toward the| towards the)? {_DIR}",
        r"§motion_\1",
    ),
    (r"\b(?:rises|rising|floats up|floating up)\b", "§motion_up"),
    (r"\b(?:sinks|sinking)\b", "§motion_down"),
    (
        r"\b(?:falls and bounces|falling and bouncing|(?:keeps |is )?bouncing(?: on the floor)?"
        r"|bounces(?: on the floor)?)\b",
        "§motion_bounces",
    ),
    (
        r"\b(?:(?:stays|staying|sits|sitting|stands|standing|remains|remaining|is|keeps|keeping) still"
        r"|rests|resting|does not move|doesn t move|not moving)\b",
        "§motion_still",
    ),
    (r"\b(?:grows|growing|gets bigger|getting bigger|expands|expanding)\b", "§motion_grows"),
    (r"\b(?:shrinks|shrinking|gets smaller|getting smaller)\b", "§motion_shrinks"),
    (r"\b(?:spins|spinning|rotates|rotating|twirls|twirling)(?: around)?\b", "§motion_spins"),
]
_COMPILED = [(re.compile(p), r) for p, r in _PHRASES]
_NUMBERS = {"two": 2, "three": 3, "2": 2, "3": 3}


def allowed_words() -> list[str]:
    """Every word the parser accepts outside multi-word phrases, plus the phrase verbs."""
    verbs = """moves slides goes travels drifts heads glides rises sinks left right up down bounces
    stays sits rests still grows shrinks spins rotates pans zooms in out leaves paints a trail
    eats dots passes behind wall touch turns becomes when they""".split()
    words = set(SHAPE_WORDS) | set(GENERIC_NOUNS) | set(SIZE_WORDS) | set(COLORS)
    words |= set(TONE_WORDS) | set(PATTERN_WORDS) | FILLERS | set(verbs)
    return sorted(words)


def _normalise(text: str) -> str:
    text = re.sub(r"[^a-z0-9§ ]+", " ", text.lower())
    text = re.sub(r"\s+", " ", text).strip()
    for pattern, repl in _COMPILED:
        text = pattern.sub(lambda m, repl=repl: " " + m.expand(repl) + " ", text)
    return re.sub(r"\s+", " ", text).strip()


def parse_caption(text: str) -> Scene:
    """The scene a caption describes; `UserError` (one line) for anything outside the grammar."""
    if not isinstance(text, str) or not text.strip():
        raise UserError("the caption is empty; describe at least one object, e.g. 'a red ball moves right'")
    objects: list[dict] = []
    pending: list[tuple[str, str | bool]] = []  # events before the first object attach to it
    adjectives: dict[str, str] = {}
    tone = pattern = camera = None
    count = touch = None

    def set_once(target: dict, key: str, value, what: str) -> None:
        if key in target and target[key] != value:
            raise UserError(f"caption gives one {what} two values: {target[key]!r} and {value!r}")
        target[key] = value

    def attach(key: str, value) -> None:
        if objects:
            set_once(objects[-1], key, value, key)
        else:
            pending.append((key, value))

    for word in _normalise(text).split():
        if word.startswith("§"):
            kind, _, arg = word[1:].partition("_")
            if kind == "count":
                count = _NUMBERS[arg]
            elif kind == "touch":
                shape_word, color = arg.split("_")
                if touch is not None:
                    raise UserError("a caption has at most one contact event")
                touch = (SHAPE_WORDS[shape_word], color)
            elif kind == "cam":
                new = arg.replace("_", " ")
                if camera not in (None, new):
                    raise UserError(f"caption gives two camera motions: {camera!r} and {new!r}")
                camera = new
            elif kind == "wall":
                attach("behind_wall", True)
            else:  # motion, trail, eats
                attach(kind, arg)
        elif word in SIZE_WORDS:
            set_once(adjectives, "size", SIZE_WORDS[word], "size")
        elif word in COLORS:
            set_once(adjectives, "color", word, "color")
        elif word in SHAPE_WORDS or word in GENERIC_NOUNS:
            spec = dict(adjectives, shape=SHAPE_WORDS.get(word))
            adjectives = {}
            if not objects:
                for key, value in pending:
                    set_once(spec, key, value, key)
                pending = []
            objects.append(spec)
        elif word in TONE_WORDS:
            new = TONE_WORDS[word]
            if tone not in (None, new):
                raise UserError(f"caption gives two background tones: {tone!r} and {new!r}")
            tone = new
        elif word in PATTERN_WORDS:
            new = PATTERN_WORDS[word]
            if pattern not in (None, new):
                raise UserError(f"caption gives two background patterns: {pattern!r} and {new!r}")
            pattern = new
        elif word not in FILLERS:
            raise UserError(f"unknown word {word!r} in caption; allowed words: {' '.join(allowed_words())}")

    if adjectives:
        words = " ".join(adjectives.values())
        raise UserError(f"{words!r} describes no object; name a shape ({', '.join(SHAPE_WORDS)})")
    if not objects:
        raise UserError(f"the caption names no object; use one of: {', '.join(SHAPE_WORDS)}")
    if count is not None and count != len(objects):
        raise UserError(f"caption says {count} objects but describes {len(objects)}")
    if touch is not None:
        shape, color = touch
        matches = [o for o in objects if o.get("shape") == shape]
        if len(matches) != 1:
            raise UserError(f"'the {shape}' in the contact event must name exactly one object")
        matches[0]["turns"] = color
    return Scene(
        objects=tuple(ObjectSpec(**o) for o in objects),
        background=Background(tone=tone, pattern=pattern or "plain"),
        camera=camera,
    )


# ---------------------------------------------------------------------------------------
# Writer

_NOUNS = {
    "circle": ["ball", "circle", "dot", "ball"],
    "square": ["square", "box", "block"],
    "triangle": ["triangle"],
}
_SIZE_ADJ = {
    "small": ["small", "little", "tiny"],
    "medium": ["", "", "medium", "medium-sized"],
    "big": ["big", "large", "huge"],
}
_DIR_VERB = ["moves {d}", "slides {d}", "goes {d}", "travels {d}", "drifts {d}", "heads {d}", "glides {d}"]
_SIDE_VERB = ["moves to the {d}", "travels to the {d}", "heads toward the {d}"]  # left/right only
_DIR_PART = ["moving {d}", "sliding {d}", "heading {d}", "going {d}", "drifting {d}ward"]
_VERB: dict[str, list[str]] = {
    "bounces": ["bounces", "bounces on the floor", "falls and bounces", "keeps bouncing"],
    "still": ["stays still", "sits still", "rests", "does not move", "remains still", "stands still"],
    "grows": ["grows", "gets bigger", "expands"],
    "shrinks": ["shrinks", "gets smaller"],
    "spins": ["spins", "rotates", "spins around", "twirls"],
}
_PART: dict[str, list[str]] = {
    "bounces": ["bouncing", "bouncing on the floor"],
    "still": ["staying still", "sitting still", "resting"],
    "grows": ["growing", "getting bigger", "expanding"],
    "shrinks": ["shrinking", "getting smaller"],
    "spins": ["spinning", "rotating"],
}
_EVENT_VERB = {
    "trail": ["leaves a {c} trail", "paints a {c} trail", "draws a {c} trail"],
    "eats": ["eats the small {c} dots", "eats up the small {c} dots", "gobbles the little {c} dots"],
    "wall": ["passes behind a wall", "goes behind a wall", "disappears behind a wall"],
}
_EVENT_PART = {
    "trail": ["leaving a {c} trail", "painting a {c} trail"],
    "eats": ["eating the small {c} dots", "eating up the tiny {c} dots"],
    "wall": ["passing behind a wall", "going behind a wall"],
}
_CAMERA_VERB = {
    "pan": ["pans {d}", "pans to the {d}", "is panning {d}"],
    "zoom": ["zooms {d}", "is zooming {d}"],
}
# Sentence frames: {objs} the object clauses, {bg} "checkered white background", {bgadj}
# "checkered white". 34 frames; together with the clause, join, camera and contact variants
# below they give thousands of distinct surface forms.
_FRAMES = [
    "{objs} on a {bg}",
    "on a {bg}, {objs}",
    "{objs} against a {bg}",
    "against a {bg}, {objs}",
    "{objs}. the background is {bgadj}",
    "the background is {bgadj}; {objs}",
    "{objs} over a {bg}",
    "over a {bg}, {objs}",
    "a {bg}: {objs}",
    "{objs}, on a {bg}",
    "{objs} in front of a {bg}",
    "in front of a {bg}, {objs}",
    "a scene with a {bg}: {objs}",
    "a {bg} where {objs}",
    "{objs} with a {bg} behind",
    "here {objs} on a {bg}",
    "we see {objs} on a {bg}",
    "a video of {objs} on a {bg}",
    "a clip where {objs}, against a {bg}",
    "the scene shows {objs} over a {bg}",
    "set on a {bg}, {objs}",
    "{objs}; background: {bgadj}",
    "background {bgadj}. {objs}",
    "on top of a {bg}, {objs}",
    "{objs}, all on a {bg}",
    "footage of {objs} against a {bg}",
    "animation: {objs} on a {bg}",
    "{objs}, {bg}",
    "watch {objs} on a {bg}",
    "simple scene: {objs} in front of a {bg}",
    "there is a {bg}, and {objs}",
    "look: {objs} over a {bg}",
    "{bgadj} background. {objs}",
    "a {bg} with {objs}",
]
_JOIN2 = ["{0} and {1}", "{0}, and {1}", "{0} while {1}", "two objects: {0} and {1}", "{0}; {1}", "{0}. {1}"]
_JOIN3 = ["{0}, {1} and {2}", "three objects: {0}, {1}, and {2}", "{0}; {1}; {2}", "{0}. {1}. {2}"]
_CAMERA_ATTACH = [
    "{s}, while the camera {c}",
    "{s} as the camera {c}",
    "{s}. the camera {c}",
    "the camera {c}. {s}",
    "{s}; the camera {c}",
    "{s} while the camera {c}",
]
_CONTACT_ATTACH = [
    "{s}. when they touch, the {n} turns {c}",
    "{s}; the {n} turns {c} when they touch",
    "{s}, and when they touch the {n} becomes {c}",
    "{s}. on contact, the {n} turns {c}",
    "{s}. once they meet, the {n} changes to {c}",
]


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _noun_phrase(obj: ObjectSpec, rng: np.random.Generator) -> str:
    noun = _pick(rng, _NOUNS[obj.shape]) if obj.shape else _pick(rng, list(GENERIC_NOUNS))
    words = [_pick(rng, _SIZE_ADJ[obj.size]), obj.color or ""]
    article = _pick(rng, ["a", "a", "one", "the"])
    text = " ".join(w for w in [article, *words, noun] if w)
    return re.sub(r"^a (?=[aeiou])", "an ", text)


def _motion(motion: str | None, rng: np.random.Generator, participle: bool) -> str:
    if motion is None:
        return ""
    if motion in ("left", "right", "up", "down"):
        options = _DIR_PART if participle else _DIR_VERB + (_SIDE_VERB if motion in ("left", "right") else [])
        return _pick(rng, options).format(d=motion)
    return _pick(rng, (_PART if participle else _VERB)[motion])


def _events(obj: ObjectSpec, rng: np.random.Generator, participle: bool) -> list[str]:
    table = _EVENT_PART if participle else _EVENT_VERB
    found = [("trail", obj.trail), ("eats", obj.eats), ("wall", obj.behind_wall or None)]
    return [_pick(rng, table[k]).format(c=v) for k, v in found if v]


def _clause(obj: ObjectSpec, rng: np.random.Generator, first: bool) -> str:
    np_ = _noun_phrase(obj, rng)
    form = int(rng.integers(6 if first else 5))
    if form == 0:  # a red ball moves right and leaves a blue trail
        parts = [_motion(obj.motion, rng, False), *_events(obj, rng, False)]
        return " ".join([np_, " and ".join(p for p in parts if p)]).strip()
    if form == 1:  # a red ball moves right, leaving a blue trail
        head = " ".join(p for p in [np_, _motion(obj.motion, rng, False)] if p)
        return ", ".join([head, *_events(obj, rng, True)])
    if form == 2:  # a red ball that moves right
        parts = [_motion(obj.motion, rng, False), *_events(obj, rng, False)]
        body = " and ".join(p for p in parts if p)
        return f"{np_} that {body}" if body else np_
    if form == 3:  # a red ball moving right
        parts = [_motion(obj.motion, rng, True), *_events(obj, rng, True)]
        return " ".join([np_, " and ".join(p for p in parts if p)]).strip()
    if form == 4:  # a red ball which moves right
        parts = [_motion(obj.motion, rng, False), *_events(obj, rng, False)]
        body = " and ".join(p for p in parts if p)
        return f"{np_} which {body}" if body else np_
    # leaving a blue trail, a red ball moves right (only first: events attach forward)
    events = _events(obj, rng, True)
    head = " ".join(p for p in [np_, _motion(obj.motion, rng, False)] if p)
    return ", ".join([*events, head])


def write_caption(scene: Scene, rng: np.random.Generator) -> str:
    """A caption of `scene` with randomly chosen template, synonyms and word order."""
    clauses = [_clause(o, rng, first=(i == 0)) for i, o in enumerate(scene.objects)]
    if len(clauses) == 1:
        objs = clauses[0]
    else:
        objs = _pick(rng, _JOIN2 if len(clauses) == 2 else _JOIN3).format(*clauses)
    bg = scene.background
    tone = {"gray": _pick(rng, ["gray", "grey"])}.get(bg.tone, bg.tone) if bg.tone else None
    pattern = bg.pattern
    if pattern == "plain":
        pattern = _pick(rng, ["", "", "plain"])
    elif pattern == "checkered":
        pattern = _pick(rng, ["checkered", "checkered", "checkerboard"])
    adj = [w for w in (pattern, tone) if w]
    if len(adj) == 2 and rng.random() < 0.5:
        adj.reverse()
    bgadj = " ".join(adj)
    if bgadj:
        text = _pick(rng, _FRAMES).format(objs=objs, bg=f"{bgadj} background", bgadj=bgadj)
    else:
        text = objs
    if scene.camera:
        kind, direction = scene.camera.split()
        cam = _pick(rng, _CAMERA_VERB[kind]).format(d=direction)
        text = _pick(rng, _CAMERA_ATTACH).format(s=text, c=cam)
    if scene.contact is not None:
        obj = scene.objects[scene.contact]
        text = _pick(rng, _CONTACT_ATTACH).format(s=text, n=_pick(rng, _NOUNS[obj.shape]), c=obj.turns)
    text = re.sub(r"\ba (?=[aeiou])", "an ", text)
    text = re.sub(r"(^|[.] )([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)
    return text + ("." if rng.random() < 0.6 else "")
