"""A training-free hold, tried and dropped: in every 8x8 cell whose latent did not move (max
channel change below `tau` from the latent frame before, and within `drift` of the latent the cell
was last drawn from; grown by `grow` cells), copy the previous output frame instead of the decoder's.
Scores the clips of gen_latents.py (runs/hold/g0.npz, g1.npz).

    python benchmarks/results/stop31/cell_hold.py
"""
import numpy as np
import torch
from scipy import ndimage

from cinegen.evaluate import evaluate_clip
from cinegen.pipeline import to_uint8

clips = [np.load(f"runs/hold/g{i}.npz") for i in (0, 1)]
V = np.concatenate([c["video"] for c in clips]).astype(np.float32)
L = np.concatenate([c["latent"] for c in clips])
P = np.concatenate([c["prompts"] for c in clips])


def cell_hold(v, lat, tau, grow, drift):
    """v (3, T, H, W) floats 0-255, lat (C, T', h, w) -> held video, largest change from v in a held cell."""
    T, s = v.shape[1], v.shape[2] // lat.shape[2]
    out, ref, errors = v.copy(), lat[:, 0].copy(), []
    for f in range(1, T):
        g = (f + 3) // 4  # the latent frame that draws video frame f (causal VAE: 1 + 4k)
        moved = np.abs(lat[:, g] - lat[:, g - 1]).max(0) > tau
        if drift:
            moved |= np.abs(lat[:, g] - ref).max(0) > drift
        if grow:
            moved = ndimage.binary_dilation(moved, structure=np.ones((3, 3), bool), iterations=grow)
        ref = np.where(moved[None], lat[:, g], ref)
        still = np.kron(~moved, np.ones((s, s), bool))
        out[:, f] = np.where(still[None], out[:, f - 1], v[:, f])
        errors.append(np.abs(out[:, f] - v[:, f])[:, still].max() if still.any() else 0)
    return out, max(errors)


def score(variant):
    rows, errors = [], []
    for v, lat, p in zip(V, L, P):
        held, err = variant(v, lat) if variant else (v, 0.0)
        errors.append(err)
        rows.append(evaluate_clip(to_uint8(torch.from_numpy(held[None]) / 127.5 - 1)[0], 8.0, str(p)))
    flicker = [r["flicker"] for r in rows if r["flicker"] is not None]
    return {"adherence": round(float(np.mean([r["adherence"] for r in rows])), 4),
            "flicker": round(float(np.mean(flicker)), 4),
            "held_error_p50": round(float(np.percentile(errors, 50)), 1),
            "held_error_p90": round(float(np.percentile(errors, 90)), 1)}


if __name__ == "__main__":
    print("decoder", score(None), flush=True)
    for args in [(0.3, 1, 0), (0.3, 1, 0.3), (0.5, 1, 0.5), (0.3, 0, 0.3), (0.2, 1, 0.2)]:
        print("tau, grow, drift =", args, score(lambda v, lat, a=args: cell_hold(v, lat, *a)), flush=True)
