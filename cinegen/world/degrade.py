"""Imperfect video for testing the detector: mp4 compression, Gaussian noise, blur."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np
from scipy import ndimage


def mp4_roundtrip(frames: np.ndarray, fps: float, crf: int = 23) -> np.ndarray:
    """Encode to H.264 yuv420p in memory at `crf` (23 = libx264's default) and decode back."""
    T, H, W, _ = frames.shape
    padded = np.pad(frames, ((0, 0), (0, H % 2), (0, W % 2), (0, 0)), mode="edge")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = padded.shape[2], padded.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for f in padded:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    buf.seek(0)
    with av.open(buf) as container:
        out = np.stack([f.to_ndarray(format="rgb24", threads=1) for f in container.decode(video=0)])
    return out[:, :H, :W]


def add_noise(frames: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    noisy = frames.astype(np.float32) + rng.normal(0.0, sigma, frames.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def blur(frames: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(frames.astype(np.float32), (0, sigma, sigma, 0)).round().astype(np.uint8)


def drift(frames: np.ndarray, shift: tuple[float, float, float]) -> np.ndarray:
    """Off-palette drift: add a constant per-channel offset (a model's color bias)."""
    return np.clip(frames.astype(np.float32) + np.asarray(shift, np.float32), 0, 255).astype(np.uint8)
