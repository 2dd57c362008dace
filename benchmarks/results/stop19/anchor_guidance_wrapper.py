"""benchmarks/tasks.py with guidance on a long video's anchor frame (a test of the idea; not in
the package). In each later window (latent 0, the anchor, known; the last latents generated):

    v = v_guided + (s - 1) * (v(text, anchor + recent) - v(text, recent only))

    ANCHOR_SCALE=2 python benchmarks/results/stop19/anchor_guidance_wrapper.py --model weights \
        --clips 0 --tasks "" --long 60 --long-clips 25 --captions-file FILE
"""

import dataclasses
import os
import runpy
import sys
from pathlib import Path

import cinegen.sampling as sampling

SCALE = float(os.environ.get("ANCHOR_SCALE", "2"))
BENCHMARKS = Path(__file__).resolve().parents[2]
guided_velocity = sampling.guided_velocity


def anchor_guided_velocity(model, canvas, x, t, known_noisy, cond, uncond, guidance, channels=None):
    v = guided_velocity(model, canvas, x, t, known_noisy, cond, uncond, guidance, channels)
    mask = canvas.mask
    if mask is None or canvas.wrap or not bool(mask[0].all()) or bool(mask[-1].any()):
        return v  # not a long video's later window
    plain = sampling.Guidance()
    v_all = guided_velocity(model, canvas, x, t, known_noisy, cond, uncond, plain, channels)
    recent_only = mask.clone()
    recent_only[0] = 0
    v_recent = guided_velocity(
        model, dataclasses.replace(canvas, mask=recent_only), x, t, known_noisy, cond, uncond, plain, channels
    )
    return v + (SCALE - 1.0) * (v_all - v_recent)


if __name__ == "__main__":
    sampling.guided_velocity = anchor_guided_velocity  # sample() looks it up at each call
    sys.path.insert(0, str(BENCHMARKS))
    sys.argv = ["tasks.py", *sys.argv[1:]]
    runpy.run_path(str(BENCHMARKS / "tasks.py"), run_name="__main__")
