"""`benchmarks/tasks.py` with another length for `loop --video`'s bridge (not kept).

    SHARE=1.0 python benchmarks/results/stop20/loop_bridge_share_wrapper.py [tasks.py flags]

SHARE is the bridge's length as a share of the clip (`cinegen.pipeline.LOOP_BRIDGE_SHARE`, 0.5).
"""

import os
import runpy
import sys

import cinegen.pipeline

if __name__ == "__main__":
    cinegen.pipeline.LOOP_BRIDGE_SHARE = float(os.environ["SHARE"])
    sys.argv = ["tasks.py", *sys.argv[1:]]
    sys.path.insert(0, "benchmarks")
    runpy.run_path("benchmarks/tasks.py", run_name="__main__")
