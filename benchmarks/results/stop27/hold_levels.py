"""benchmarks/quality.py with `pipeline.HOLD_LEVELS` set from the environment (0 = plain rounding,
as before stop 27), to compare the decoder's output quantized with and without hysteresis:

    HOLD=0 python hold_levels.py --model ../../../weights --captions-file ../stop10/validation_captions_2.txt \
        --captions 32 --seeds 1 --size 128 --out hold_train32_off.jsonl
"""

import os
import runpy
import sys
from pathlib import Path

import cinegen.pipeline

cinegen.pipeline.HOLD_LEVELS = float(os.environ.get("HOLD", cinegen.pipeline.HOLD_LEVELS))
sys.argv = ["quality.py", *sys.argv[1:]]
runpy.run_path(str(Path(__file__).parents[2] / "quality.py"), run_name="__main__")
