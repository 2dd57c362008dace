"""A worker: claims jobs from the database, runs the pipeline, writes outputs atomically.

One job at a time per process. While a job runs, a heartbeat thread keeps its lease alive
(so a long decode is not mistaken for death) and the pipeline's per-step progress callback
records progress and checks for cancellation. A step of a large frame on a CPU takes minutes, so
every module call of the model checks too, for what the heartbeat has seen: a cancel or a
shutdown stops a job within a heartbeat (a third of the lease), not at the end of its step.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import threading
import time
import traceback
import uuid
from typing import Any

from cinegen.errors import UserError
from cinegen.serve.db import Job, make_engine, make_sessionmaker
from cinegen.serve.queue import JobQueue, Lease
from cinegen.serve.settings import Settings
from cinegen.serve.storage import Storage

log = logging.getLogger("cinegen.serve.worker")


class _Stop(Exception):
    """Why a running job stopped early (raised from the progress callback as a Cancelled)."""


class Worker:
    def __init__(
        self,
        settings: Settings,
        device: str = "auto",
        poll_seconds: float = 0.5,
        parent_pid: int | None = None,
    ) -> None:
        self.settings = settings
        self.device = device
        self.poll_seconds = poll_seconds
        self.parent_pid = parent_pid  # set when started by `cinegen serve`: exit if it dies
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.queue = JobQueue(
            make_sessionmaker(make_engine(settings.url)), settings.lease_seconds, settings.max_attempts
        )
        self.storage = Storage(settings.storage)
        self.stopping = threading.Event()
        self._pipe = None

    # ------------------------------------------------------------------ main loop

    def install_signal_handlers(self) -> None:
        def stop(signum: int, _frame: Any) -> None:
            log.info("worker %s: signal %d, stopping after handing back the current job", self.id, signum)
            self.stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def orphaned(self) -> bool:
        return self.parent_pid is not None and os.getppid() != self.parent_pid

    def pipeline(self):
        if self._pipe is None:
            from cinegen.pipeline import Pipeline  # heavy (torch): only workers import it

            t0 = time.time()
            self._pipe = Pipeline.load(model=self.settings.model_dir, device=self.device)
            log.info("worker %s: model loaded in %.1fs", self.id, time.time() - t0)
        return self._pipe

    def run(self, max_jobs: int | None = None) -> int:
        """Claim and run jobs until stopped (or `max_jobs` are done); returns the number run."""
        self.pipeline()
        log.info("worker %s: ready on %s", self.id, self.settings.url.split("@")[-1])
        done = 0
        while not self.stopping.is_set() and not self.orphaned():
            if max_jobs is not None and done >= max_jobs:
                break
            job = self.queue.claim(self.id)
            if job is None:
                self.stopping.wait(self.poll_seconds)
                continue
            self.run_job(job)
            done += 1
        return done

    # ------------------------------------------------------------------ one job

    def run_job(self, job: Job) -> None:
        log.info("worker %s: claimed %s (attempt %d)", self.id, job.id, job.attempts)
        lease = {"state": Lease.OK}
        finished = threading.Event()

        def beat() -> None:
            while not finished.wait(self.settings.lease_seconds / 3):
                state = self.queue.heartbeat(job.id, self.id)
                if state is not Lease.OK:
                    lease["state"] = state

        def progress(step: int, total: int) -> None:
            state = self.queue.heartbeat(job.id, self.id, progress=0.95 * step / max(total, 1))
            if state is not Lease.OK:
                lease["state"] = state
            if lease["state"] is not Lease.OK or self.stopping.is_set() or self.orphaned():
                raise self._cancelled()

        def interrupt(_module, _inputs) -> None:
            # Only flags: a module call is too frequent for a database read.
            if lease["state"] is not Lease.OK or self.stopping.is_set():
                raise self._cancelled()

        from torch.nn.modules.module import register_module_forward_pre_hook

        heart = threading.Thread(target=beat, name=f"heartbeat-{job.id}", daemon=True)
        heart.start()
        # Every module's, this process's alone, and only while this job runs (one job per process).
        interrupting = register_module_forward_pre_hook(interrupt)
        t0 = time.time()
        try:
            frames, fps, metadata = self._generate(job, progress)
            if lease["state"] is not Lease.OK or self.stopping.is_set():
                raise self._cancelled()
            output, thumbnail = self._write(job, frames, fps, metadata)
            metadata = {
                **metadata,
                "frames": int(frames.shape[0]),
                "height": int(frames.shape[1]),
                "width": int(frames.shape[2]),
                "fps": float(fps),
            }
            if self.queue.complete(job.id, self.id, output, thumbnail, metadata, time.time() - t0):
                log.info("worker %s: completed %s in %.1fs", self.id, job.id, time.time() - t0)
            else:
                log.warning("worker %s: lost %s before completing it", self.id, job.id)
        except Exception as e:
            self._stopped(job, e, lease["state"])
        finally:
            interrupting.remove()
            finished.set()
            heart.join()

    def _cancelled(self) -> Exception:
        from cinegen.pipeline import Cancelled

        return Cancelled()

    def _stopped(self, job: Job, exc: Exception, state: Lease) -> None:
        from cinegen.pipeline import Cancelled

        if isinstance(exc, Cancelled):
            if state is Lease.LOST:
                log.warning("worker %s: lost %s mid-run; another worker owns it now", self.id, job.id)
            elif state is Lease.CANCELLED:
                self.queue.finish(job.id, self.id, "cancelled", "cancelled", "cancelled while running")
                log.info("worker %s: cancelled %s", self.id, job.id)
            else:  # shutting down: hand it back now rather than wait for the lease to run out
                self.queue.release(job.id, self.id)
                log.info("worker %s: handed back %s", self.id, job.id)
        elif isinstance(exc, UserError):
            self.queue.finish(job.id, self.id, "failed", "invalid_input", self._public(str(exc)))
            log.info("worker %s: %s failed: %s", self.id, job.id, exc)
        else:
            log.error("worker %s: %s crashed:\n%s", self.id, job.id, traceback.format_exc())
            self.queue.finish(
                job.id,
                self.id,
                "failed",
                "internal_error",
                self._public(f"{type(exc).__name__}: {exc}".splitlines()[0][:500]),
            )

    def _public(self, text: str) -> str:
        """`text` with input paths made relative to the storage root (`uploads/<random name>`):
        errors and metadata reach the client, where the server keeps its files must not."""
        return text.replace(f"{self.storage.root}{os.sep}", "")

    def _generate(self, job: Job, progress) -> tuple[Any, float, dict]:
        from cinegen.pipeline import GenerateRequest

        inputs = {role: str(self.storage.absolute(rel)) for role, rel in job.inputs.items()}
        req = GenerateRequest(**job.params, **inputs)
        pipe = self.pipeline()
        if req.draft:
            # "Draft first": a quick preview at half size and a quarter of the steps, published as
            # variant=draft while the full render runs (first 20% of the progress bar).
            self._draft(job, pipe, req, lambda step, total: progress(step * 0.2 / 0.95, total))
            final = progress

            def progress(step: int, total: int) -> None:
                final(total * 0.2 / 0.95 + step * 0.75 / 0.95, total)

        result = pipe.run(req, progress=progress)
        return result.frames, float(result.fps), self._public_metadata(job, result.metadata)

    def _draft(self, job: Job, pipe, req, progress) -> None:
        from cinegen.media import write_video
        from cinegen.pipeline import draft_size

        geometry = pipe.validate(req)
        width, height = draft_size(geometry.width, geometry.height, pipe.backend.size_multiple)
        steps = max(1, (req.steps or pipe.defaults.steps) // 4)
        quick = dataclasses.replace(
            req, aspect=None, size=None, steps=steps, draft=False, width=width, height=height
        )
        result = pipe.run(quick, progress=progress)
        path = write_video(
            self.storage.output(job.id, ".draft.mp4"),
            result.frames,
            result.fps,
            self._public_metadata(job, result.metadata),
        )
        self.queue.set_draft(job.id, self.id, self.storage.relative(path))

    def _public_metadata(self, job: Job, metadata: dict | None) -> dict:
        """The pipeline's metadata with the request's input files named as stored (`uploads/<name>`)
        instead of by their absolute paths."""
        metadata = dict(metadata or {})
        if "request" in metadata:
            metadata["request"] = {**metadata["request"], **job.inputs}
        return metadata

    def _write(self, job: Job, frames, fps: float, metadata: dict) -> tuple[str, str]:
        from cinegen.media import write_video

        # write_video goes through a temp file and a rename: a reader never sees a partial mp4.
        video = write_video(self.storage.output(job.id, ".mp4"), frames, fps, {**metadata, "id": job.id})
        thumb = write_video(self.storage.output(job.id, ".png"), frames[len(frames) // 2], fps)
        return self.storage.relative(video), self.storage.relative(thumb)
