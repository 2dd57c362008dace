"""benchmarks/tasks.py with a variant of `cinegen loop --video` (stop 26; neither variant was kept).

    SHARE=1.0 python benchmarks/results/stop26/loop_variants.py --model weights --clips 64 --seed 0 \
        --tasks loop_video --captions-file benchmarks/results/stop10/validation_captions_2.txt

SHARE sets cinegen.pipeline.LOOP_BRIDGE_SHARE (default 0.5); EMPTY_BRIDGE_PROMPT=1 samples the
bridge back to the start on the empty prompt instead of the clip's. Run from the repository root.
"""

import os
import runpy
import sys

sys.path.insert(0, "benchmarks")
import cinegen.pipeline as pipeline  # noqa: E402

pipeline.LOOP_BRIDGE_SHARE = float(os.environ.get("SHARE", pipeline.LOOP_BRIDGE_SHARE))
if os.environ.get("EMPTY_BRIDGE_PROMPT") == "1":
    bridge = pipeline._Job.bridge
    pipeline._Job.bridge = lambda self, a, b, latents, seed, prompt=None: bridge(self, a, b, latents, seed, prompt="")
sys.argv = ["tasks.py", *sys.argv[1:]]
runpy.run_path("benchmarks/tasks.py", run_name="__main__")
