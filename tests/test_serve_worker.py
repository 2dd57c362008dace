"""A worker on its own (a stand-in pipeline, no HTTP): how fast a cancel reaches a running job."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from cinegen.serve.auth import Principal
from cinegen.serve.queue import NewJob
from cinegen.serve.settings import Settings
from cinegen.serve.worker import Worker

ALICE = Principal("key_alice", "alice", max_concurrent=10, max_seconds_per_day=1e6)


class OneLongStep:
    """A pipeline whose one step takes `seconds` of module calls (a large frame on a CPU): it never
    reaches the per-step progress callback before the end."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.layer = torch.nn.Linear(4, 4)

    def run(self, req, progress):
        end = time.time() + self.seconds
        with torch.inference_mode():
            while time.time() < end:
                self.layer(torch.zeros(1, 4))
                time.sleep(0.01)
        progress(1, 1)
        return SimpleNamespace(frames=np.zeros((5, 16, 16, 3), np.uint8), fps=8.0, metadata={})


def test_a_cancel_stops_a_running_job_inside_a_long_step(tmp_path: Path) -> None:
    worker = Worker(Settings(storage=tmp_path, lease_seconds=0.6))
    worker._pipe = OneLongStep(seconds=20.0)
    params = {"prompt": "a red ball", "fps": 8.0, "seed": 0, "sampler": "euler"}
    job = worker.queue.submit(ALICE, NewJob("m", "generate", 1.0, params, {}), 10)[0]
    claimed = worker.queue.claim(worker.id)
    assert claimed.id == job.id
    running = threading.Thread(target=worker.run_job, args=(claimed,))
    t0 = time.time()
    running.start()
    time.sleep(0.3)
    assert worker.queue.cancel_or_delete(ALICE.id, job.id)[0] == "cancelling"
    running.join(timeout=30)
    assert not running.is_alive()
    assert time.time() - t0 < 5  # a heartbeat (0.2 s) after the cancel, not at the step's end (20 s)
    assert worker.queue.get(ALICE.id, job.id).status == "cancelled"
    # The check is gone with the job: modules run again as usual.
    worker._pipe.layer(torch.zeros(1, 4))
