"""The durable job queue: every state change is one guarded UPDATE on the jobs table.

A worker owns a job only while `worker_id` names it and its lease is in the future; each
write from a worker is conditioned on both, so a worker that lost its job (lease expired,
job re-queued and claimed elsewhere) can never overwrite the new owner's state. That is what
makes a killed worker's job run again exactly once more rather than zero or two times.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cinegen.serve.auth import Principal
from cinegen.serve.db import ACTIVE, ApiKey, Job


class QueueError(Exception):
    """A request the queue refuses; `status` is the HTTP status the API answers with."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Lease(Enum):
    OK = "ok"
    CANCELLED = "cancelled"  # the owner asked to cancel: stop at the next step
    LOST = "lost"  # the job is no longer ours: stop and write nothing


@dataclass(frozen=True)
class NewJob:
    model: str
    task: str
    seconds: float
    params: dict[str, Any]
    inputs: dict[str, str]
    source_id: str | None = None


def request_hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class JobQueue:
    def __init__(self, sessions: sessionmaker, lease_seconds: float = 30.0, max_attempts: int = 3) -> None:
        self.sessions = sessions
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts

    # ------------------------------------------------------------------ API side

    def submit(
        self,
        who: Principal,
        new: NewJob,
        max_queue: int,
        idempotency_key: str | None = None,
        fingerprint: str | None = None,
    ) -> tuple[Job, bool]:
        """Insert a queued job (or return the one made by an earlier request with the same key).

        Returns (job, created). Quotas are checked in the same transaction as the insert, with
        the key's row locked on PostgreSQL (SQLite's BEGIN IMMEDIATE already serialises), so two
        simultaneous requests cannot both slip under a limit.
        """
        if idempotency_key is not None:
            found = self._by_idempotency(who.id, idempotency_key, fingerprint)
            if found is not None:
                return found, False
        now = time.time()
        job = Job(
            id="video_" + uuid.uuid4().hex,
            owner=who.id,
            status="queued",
            progress=0.0,
            created_at=now,
            model=new.model,
            task=new.task,
            seconds=new.seconds,
            params_json=json.dumps(new.params, sort_keys=True),
            inputs_json=json.dumps(new.inputs, sort_keys=True),
            source_id=new.source_id,
            idempotency_key=idempotency_key,
            request_hash=fingerprint,
            attempts=0,
            cancel_requested=False,
            deleted=False,
        )
        try:
            with self.sessions.begin() as s:
                s.execute(select(ApiKey.id).where(ApiKey.id == who.id).with_for_update())
                self._check_limits(s, who, new.seconds, max_queue, now)
                s.add(job)
        except IntegrityError:
            # A concurrent request with the same idempotency key won the insert.
            found = self._by_idempotency(who.id, idempotency_key or "", fingerprint)
            if found is None:
                raise
            return found, False
        return job, True

    def _by_idempotency(self, owner: str, key: str, fingerprint: str | None) -> Job | None:
        with self.sessions() as s:
            job = s.scalar(select(Job).where(Job.owner == owner, Job.idempotency_key == key))
        if job is not None and job.request_hash != fingerprint:
            raise QueueError(
                409,
                "idempotency_conflict",
                f"Idempotency-Key {key!r} was already used with a different request",
            )
        return job

    @staticmethod
    def _check_limits(s: Session, who: Principal, seconds: float, max_queue: int, now: float) -> None:
        queued = s.scalar(select(func.count()).select_from(Job).where(Job.status == "queued"))
        if queued >= max_queue:
            raise QueueError(
                429, "queue_full", f"the queue holds {queued} jobs, the server's limit; retry later"
            )
        active = s.scalar(
            select(func.count()).select_from(Job).where(Job.owner == who.id, Job.status.in_(ACTIVE))
        )
        if active >= who.max_concurrent:
            raise QueueError(
                429,
                "quota_exceeded",
                f"this key has {active} unfinished jobs; its limit is {who.max_concurrent}",
            )
        # Jobs cancelled before they started cost nothing; everything else counts, deleted or not.
        used = s.scalar(
            select(func.coalesce(func.sum(Job.seconds), 0.0)).where(
                Job.owner == who.id,
                Job.created_at >= now - 86400,
                or_(Job.status != "cancelled", Job.started_at.is_not(None)),
            )
        )
        if used + seconds > who.max_seconds_per_day:
            raise QueueError(
                429,
                "quota_exceeded",
                f"this key used {used:g} of its {who.max_seconds_per_day:g} seconds of video in the last 24 h; "
                f"{seconds:g} more requested",
            )

    def get(self, owner: str, job_id: str) -> Job | None:
        self.requeue_expired()
        with self.sessions() as s:
            return s.scalar(select(Job).where(Job.id == job_id, Job.owner == owner, Job.deleted.is_(False)))

    def list(self, owner: str, limit: int, after: str | None, order: str) -> tuple[list[Job], bool]:
        """A page of the owner's videos, newest first (order="desc") or oldest first, after a cursor id."""
        newest_first = order == "desc"
        self.requeue_expired()
        with self.sessions() as s:
            q = select(Job).where(Job.owner == owner, Job.deleted.is_(False))
            if after is not None:
                cursor = s.scalar(select(Job).where(Job.id == after, Job.owner == owner))
                if cursor is None:
                    raise QueueError(400, "invalid_cursor", f"after={after!r} is not one of your videos")
                key = (cursor.created_at, cursor.id)
                if newest_first:
                    q = q.where(or_(Job.created_at < key[0], and_(Job.created_at == key[0], Job.id < key[1])))
                else:
                    q = q.where(or_(Job.created_at > key[0], and_(Job.created_at == key[0], Job.id > key[1])))
            cols = (Job.created_at.desc(), Job.id.desc()) if newest_first else (Job.created_at, Job.id)
            rows = list(s.scalars(q.order_by(*cols).limit(limit + 1)))
        return rows[:limit], len(rows) > limit

    def cancel_or_delete(self, owner: str, job_id: str) -> tuple[str, Job | None]:
        """Queued → cancelled now; running → cancel requested (the worker stops within a step);
        finished → deleted (hidden; the caller removes its files). Returns (what happened, job)."""
        self.requeue_expired()
        now = time.time()
        with self.sessions.begin() as s:
            job = s.scalar(select(Job).where(Job.id == job_id, Job.owner == owner, Job.deleted.is_(False)))
            if job is None:
                return "missing", None
            if job.status == "queued":
                job.status, job.finished_at = "cancelled", now
                job.error_code, job.error_message = "cancelled", "cancelled before it started"
                return "cancelled", job
            if job.status == "in_progress":
                job.cancel_requested = True
                return "cancelling", job
            job.deleted = True
            return "deleted", job

    # ------------------------------------------------------------------ worker side

    def requeue_expired(self) -> int:
        """Give jobs whose worker stopped heartbeating back to the queue (or fail them for good).

        Called before every read as well as every claim: called only on claims, a dead worker's
        job showed in_progress at its last progress until some worker was free to ask for work,
        which behind a long job could be many leases later.
        """
        now = time.time()
        expired = and_(Job.status == "in_progress", Job.lease_until < now)
        with self.sessions() as s:  # a plain read first: nearly always nothing, and no write lock taken
            if s.scalar(select(Job.id).where(expired).limit(1)) is None:
                return 0
        with self.sessions.begin() as s:
            n = s.execute(
                update(Job)
                .where(expired, Job.cancel_requested.is_(True))
                .values(
                    status="cancelled",
                    finished_at=now,
                    worker_id=None,
                    lease_until=None,
                    error_code="cancelled",
                    error_message="cancelled while running",
                )
            ).rowcount
            n += s.execute(
                update(Job)
                .where(expired, Job.attempts >= self.max_attempts)
                .values(
                    status="failed",
                    finished_at=now,
                    worker_id=None,
                    lease_until=None,
                    error_code="worker_lost",
                    error_message=f"the worker running this job died {self.max_attempts} times",
                )
            ).rowcount
            n += s.execute(
                update(Job)
                .where(expired)
                .values(status="queued", worker_id=None, lease_until=None, progress=0.0, started_at=None)
            ).rowcount
        return n

    def claim(self, worker_id: str) -> Job | None:
        """Atomically take the oldest queued job: one UPDATE whose WHERE re-checks status='queued',
        so of two workers racing for a row exactly one sees rowcount 1."""
        self.requeue_expired()
        now = time.time()
        oldest = (
            select(Job.id)
            .where(Job.status == "queued")
            .order_by(Job.created_at, Job.id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        with self.sessions.begin() as s:
            job_id = s.scalar(
                update(Job)
                .where(Job.id == oldest, Job.status == "queued")
                .values(
                    status="in_progress",
                    worker_id=worker_id,
                    lease_until=now + self.lease_seconds,
                    started_at=now,
                    attempts=Job.attempts + 1,
                    progress=0.0,
                )
                .returning(Job.id)
            )
        if job_id is None:
            return None
        with self.sessions() as s:
            return s.get(Job, job_id)

    def _mine(self, job_id: str, worker_id: str):
        return and_(Job.id == job_id, Job.worker_id == worker_id, Job.status == "in_progress")

    def heartbeat(self, job_id: str, worker_id: str, progress: float | None = None) -> Lease:
        """Extend the lease (and record progress); say whether to go on, stop, or drop the job."""
        values: dict[str, Any] = {"lease_until": time.time() + self.lease_seconds}
        if progress is not None:
            values["progress"] = max(0.0, min(1.0, progress))
        with self.sessions.begin() as s:
            row = s.execute(
                update(Job)
                .where(self._mine(job_id, worker_id))
                .values(**values)
                .returning(Job.cancel_requested)
            ).first()
        if row is None:
            return Lease.LOST
        return Lease.CANCELLED if row[0] else Lease.OK

    def set_draft(self, job_id: str, worker_id: str, draft: str) -> bool:
        with self.sessions.begin() as s:
            return (
                s.execute(update(Job).where(self._mine(job_id, worker_id)).values(draft=draft)).rowcount == 1
            )

    def complete(
        self, job_id: str, worker_id: str, output: str, thumbnail: str, metadata: dict, run_seconds: float
    ) -> bool:
        with self.sessions.begin() as s:
            return (
                s.execute(
                    update(Job)
                    .where(self._mine(job_id, worker_id))
                    .values(
                        status="completed",
                        progress=1.0,
                        finished_at=time.time(),
                        output=output,
                        thumbnail=thumbnail,
                        metadata_json=json.dumps(metadata, sort_keys=True, default=str),
                        run_seconds=run_seconds,
                        lease_until=None,
                    )
                ).rowcount
                == 1
            )

    def finish(self, job_id: str, worker_id: str, status: str, code: str, message: str) -> bool:
        """End a job as failed or cancelled."""
        assert status in ("failed", "cancelled")
        with self.sessions.begin() as s:
            return (
                s.execute(
                    update(Job)
                    .where(self._mine(job_id, worker_id))
                    .values(
                        status=status,
                        finished_at=time.time(),
                        error_code=code,
                        error_message=message[:2000],
                        lease_until=None,
                    )
                ).rowcount
                == 1
            )

    def release(self, job_id: str, worker_id: str) -> bool:
        """Hand a job back to the queue at once (a worker shutting down cleanly)."""
        with self.sessions.begin() as s:
            return (
                s.execute(
                    update(Job)
                    .where(self._mine(job_id, worker_id))
                    .values(
                        status="queued",
                        worker_id=None,
                        lease_until=None,
                        progress=0.0,
                        started_at=None,
                        attempts=Job.attempts - 1,  # a clean hand-back is not a crash
                    )
                ).rowcount
                == 1
            )

    # ------------------------------------------------------------------ metrics

    def stats(self) -> dict[str, float]:
        self.requeue_expired()
        with self.sessions() as s:
            counts = dict(s.execute(select(Job.status, func.count()).group_by(Job.status)).all())
            mean = s.scalar(select(func.avg(Job.run_seconds)).where(Job.status == "completed"))
        return {
            "queue_length": counts.get("queued", 0),
            "jobs_running": counts.get("in_progress", 0),
            "jobs_completed": counts.get("completed", 0),
            "jobs_failed": counts.get("failed", 0),
            "jobs_cancelled": counts.get("cancelled", 0),
            "mean_seconds_per_job": float(mean or 0.0),
        }
