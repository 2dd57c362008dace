"""Where cell_hold.py (tau 0.3, grow 1, drift 0.3) leaves pixels more than 16 levels from what the
decoder drew: a held cell that should have changed (a ghost).

    python benchmarks/results/stop31/cell_hold_errors.py
"""
import numpy as np
from cell_hold import L, P, V, cell_hold

total = off = 0
per_frame = np.zeros(V.shape[2], int)
for i, (v, lat, p) in enumerate(zip(V, L, P)):
    held, _ = cell_hold(v, lat, 0.3, 1, 0.3)
    far = np.abs(held - v).max(0) > 16
    off, total = off + far.sum(), total + far.size
    per_frame += far.sum((1, 2))
    if far.sum() > 50:
        print(i, p, int(far.sum()), "pixels")
print("pixels > 16 levels off:", off, "of", total, "; per frame:", per_frame.tolist())
