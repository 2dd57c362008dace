"""The spacetime canvas: what is known about a latent video, and the tasks that build one.

Every task fills the unknown part of `z (C, T, H, W)` given text and whatever is known; the
sampler runs them all. Masks live on the token grid `(T, H/p, W/p)` (p = patch size) since
that is the resolution at which the denoiser takes a timestep; 1 = known, 0 = generate.
Nothing here knows the model's internals.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from cinegen.errors import UserError


@dataclass
class Canvas:
    shape: tuple[int, int, int]  # latent frames T, height H, width W
    patch: int = 2
    known: torch.Tensor | None = None  # (C, T, H, W) latent values that are given; (B, C, T, H, W) per clip
    mask: torch.Tensor | None = None  # (T, H/p, W/p) float, 1 = known
    t_floor: float = 0.0  # noise level of known tokens (0 = exact)
    init: torch.Tensor | None = None  # (C, T, H, W) source for SDEdit-style edits
    strength: float = 1.0  # edits start at t = strength
    wrap: bool = False  # circular time (seamless loop)
    # The given pixel frames (video frame index -> (3, H, W) in [-1, 1] at the latent's pixel size),
    # for checkpoints that take the image itself besides its latent (Wan image-to-video: its CLIP
    # image encoder, and a condition latent encoded from the given frames among blank ones).
    images: dict[int, torch.Tensor] | None = None
    # A low-resolution latent (C, T, h, w) the result must match once downsampled to (h, w), kept
    # while t >= anchor_until: draft → final (ILVR, Choi et al., arXiv 2108.02938). The final adds
    # detail above the draft's resolution and keeps what the draft drew below it.
    anchor: torch.Tensor | None = None
    anchor_until: float = 0.0

    def __post_init__(self) -> None:
        t, h, w = self.shape
        assert h % self.patch == 0 and w % self.patch == 0, (
            f"latent {h}x{w} not divisible by patch {self.patch}"
        )
        if self.mask is not None:
            assert self.known is not None, "a mask needs known values"
            assert tuple(self.mask.shape) == self.token_grid, (
                f"mask {tuple(self.mask.shape)} != {self.token_grid}"
            )
        if self.known is not None:
            assert tuple(self.known.shape[-3:]) == self.shape, (
                f"known {tuple(self.known.shape)} != {self.shape}"
            )
        if self.anchor is not None:
            assert self.anchor.shape[1] == t and self.anchor.shape[2] <= h and self.anchor.shape[3] <= w, (
                f"anchor {tuple(self.anchor.shape)} does not fit {self.shape}"
            )
        if not 0.0 < self.strength <= 1.0:
            raise UserError(f"strength {self.strength} is outside (0, 1]")
        if not 0.0 <= self.anchor_until <= 1.0:
            raise UserError(f"anchor-until {self.anchor_until:g} is outside [0, 1]")

    @property
    def token_grid(self) -> tuple[int, int, int]:
        t, h, w = self.shape
        return t, h // self.patch, w // self.patch

    def token_mask(self) -> torch.Tensor:
        return self.mask if self.mask is not None else torch.zeros(self.token_grid)

    def cell_mask(self) -> torch.Tensor:
        """The mask at latent resolution `(1, T, H, W)` for blending latents."""
        p = self.patch
        return self.token_mask().repeat_interleave(p, dim=-2).repeat_interleave(p, dim=-1)[None]


# ----------------------------------------------------------------------------- task builders


def text_to_video(shape: tuple[int, int, int], patch: int = 2) -> Canvas:
    """Nothing known; an image is a one-frame video."""
    return Canvas(shape, patch)


def _frames_known(shape, patch, known: torch.Tensor, frames: list[int], t_floor: float = 0.0) -> Canvas:
    grid = (shape[0], shape[1] // patch, shape[2] // patch)
    mask = torch.zeros(grid)
    mask[frames] = 1.0
    return Canvas(shape, patch, known=known, mask=mask, t_floor=t_floor)


def keep_frames(
    shape, known: torch.Tensor, frames: list[int], patch: int = 2, t_floor: float = 0.0
) -> Canvas:
    """Known latent frames at the given indices (first frame: image→video; head: extend; ...)."""
    for f in frames:
        if not -shape[0] <= f < shape[0]:
            raise UserError(f"latent frame {f} is outside a clip of {shape[0]} latent frames")
    return _frames_known(shape, patch, known, frames, t_floor)


def keep_region(shape, known: torch.Tensor, region: torch.Tensor, patch: int = 2) -> Canvas:
    """Region edit: `region` (T, h, w) token mask, 1 = keep the source there."""
    return Canvas(shape, patch, known=known, mask=region.float())


def edit(shape, source: torch.Tensor, strength: float, patch: int = 2) -> Canvas:
    """SDEdit (Meng et al., arXiv 2108.01073): start from the source noised to t = strength."""
    return Canvas(shape, patch, init=source, strength=strength)


def finish_draft(shape, draft: torch.Tensor, strength: float, patch: int = 2, anchor_until: float = 0.0) -> Canvas:
    """Draft → final: an SDEdit of the draft's latent (C, T, h, w) upsampled to `shape`, whose
    low frequencies stay the draft's while t >= `anchor_until` (1: never, a plain SDEdit)."""
    up = F.interpolate(draft[None].float(), size=shape, mode="trilinear", align_corners=False)[0]
    anchor = draft.float() if anchor_until < 1.0 else None
    return Canvas(shape, patch, init=up, strength=strength, anchor=anchor, anchor_until=anchor_until)


def loop(shape, patch: int = 2, source: torch.Tensor | None = None, strength: float = 1.0) -> Canvas:
    """Circular time; with a source video, an SDEdit of it on a circular time axis."""
    return Canvas(shape, patch, init=source, strength=strength if source is not None else 1.0, wrap=True)


def with_t_floor(canvas: Canvas, t_floor: float) -> Canvas:
    return replace(canvas, t_floor=t_floor)


def keep_ends(shape, known: torch.Tensor, head: int, tail: int, patch: int = 2) -> Canvas:
    """Connect / image→video with a last frame: the first `head` and last `tail` latent frames known."""
    t = shape[0]
    if head + tail >= t:
        raise UserError(f"{head} + {tail} known latent frames leave nothing to generate in {t}")
    return keep_frames(shape, known, list(range(head)) + list(range(t - tail, t)), patch)


def region_edit(
    shape, source: torch.Tensor, keep: torch.Tensor, patch: int = 2, strength: float = 1.0
) -> Canvas:
    """Regenerate only where `keep` (T, h, w) is 0; with strength < 1 the region starts from the source."""
    return Canvas(
        shape,
        patch,
        known=source,
        mask=keep.float(),
        init=source if strength < 1.0 else None,
        strength=strength,
    )


def pixel_mask_to_tokens(white: torch.Tensor, time_factor: int, cell: int) -> torch.Tensor:
    """A pixel mask `(F, H, W)` (True = regenerate, F = 1 + time_factor·k) -> token keep-mask `(T, H/cell, W/cell)`.

    A token is kept only when none of the pixels it covers (in space, and in the video frames
    its latent frame encodes: frame 0 alone, then groups of `time_factor`) is to be regenerated,
    so the generated region always covers the whole white area.
    """
    f, h, w = white.shape
    assert (f - 1) % time_factor == 0 and h % cell == 0 and w % cell == 0, (f, h, w, time_factor, cell)
    grouped = torch.cat(
        [white[:1].repeat(time_factor, 1, 1), white[1:]]
    ).float()  # frame 0 fills its own group
    pooled = torch.nn.functional.max_pool3d(grouped[None, None], (time_factor, cell, cell))[0, 0]
    return 1.0 - pooled


# ----------------------------------------------------------------------------- training masks

TRAINING_MASK_KINDS = ("first_frame", "head", "tail", "head_tail", "random_frames", "spatial")


def random_training_mask(grid: tuple[int, int, int], generator: torch.Generator) -> torch.Tensor:
    """A random condition mask on the token grid, one of TRAINING_MASK_KINDS (DESIGN.md, training)."""
    t, h, w = grid
    mask = torch.zeros(grid)

    def randint(lo: int, hi: int) -> int:  # inclusive
        return int(torch.randint(lo, hi + 1, (1,), generator=generator))

    kind = TRAINING_MASK_KINDS[randint(0, len(TRAINING_MASK_KINDS) - 1)]
    if t == 1 and kind != "spatial":
        kind = "spatial"
    if t == 2 and kind == "head_tail":
        kind = "first_frame"
    if kind == "first_frame":
        mask[0] = 1
    elif kind == "head":
        mask[: randint(1, t - 1)] = 1
    elif kind == "tail":
        mask[t - randint(1, t - 1) :] = 1
    elif kind == "head_tail":
        mask[0] = 1
        mask[-1] = 1
    elif kind == "random_frames":
        chosen = torch.rand(t, generator=generator) < 0.4
        chosen[randint(0, t - 1)] = False  # always leave something to generate
        mask[chosen] = 1
    else:  # spatial: a box kept (or everything but the box), in every frame
        bh, bw = randint(1, max(1, h - 1)), randint(1, max(1, w - 1))
        y, x = randint(0, h - bh), randint(0, w - bw)
        mask[:, y : y + bh, x : x + bw] = 1
        if randint(0, 1):
            mask = 1 - mask
    return mask
