"""Experiment: long videos carry the anchor's residual (static parts) and, where the anchor does not
reach (moving content), the previous window's last frame's residual."""
import runpy
import sys

import numpy as np

import cinegen.pipeline as P

orig = P.carry_detail
state = {"anchor": None, "prev_last": None}
FK = 8  # f · CONTEXT_LATENTS: the context's last frame in each window

def hybrid(frames, known, decoded=None):
    out = orig(frames, known, decoded)
    if list(known) != [0] or decoded:
        return out
    anchor = known[0]
    if state["anchor"] is None or not np.array_equal(state["anchor"], anchor):
        state["anchor"], state["prev_last"] = anchor, None
    elif state["prev_last"] is not None:
        window = frames.astype(np.float32)
        tol = P.DETAIL_TOLERANCE
        same_anchor = np.clip(2.0 - np.abs(window - window[0]).max(-1, keepdims=True) / tol, 0, 1)
        ref = window[FK]
        same_last = np.clip(2.0 - np.abs(window - ref).max(-1, keepdims=True) / tol, 0, 1)
        residual = state["prev_last"].astype(np.float32) - ref
        out = np.clip(out.astype(np.float32) + same_last * (1 - same_anchor) * residual, 0, 255).round().astype(np.uint8)
    state["prev_last"] = out[-1]
    return out

P.carry_detail = hybrid
sys.argv = ["benchmarks/tasks.py"] + sys.argv[1:]
runpy.run_path("benchmarks/tasks.py", run_name="__main__")
