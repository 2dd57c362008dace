"""The job queue on its own (no HTTP, no model): atomic claims, leases, cancellation, idempotency, quotas."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from cinegen.serve.auth import Principal
from cinegen.serve.db import make_engine, make_sessionmaker
from cinegen.serve.queue import JobQueue, Lease, NewJob, QueueError

ALICE = Principal("key_alice", "alice", max_concurrent=1000, max_seconds_per_day=1e6)
BOB = Principal("key_bob", "bob", max_concurrent=1000, max_seconds_per_day=1e6)


def new_job(seconds: float = 1.0, prompt: str = "a red ball") -> NewJob:
    return NewJob("m", "generate", seconds, {"prompt": prompt, "fps": 8.0, "seed": 0, "sampler": "euler"}, {})


def open_queue(tmp_path: Path, lease: float = 30.0, attempts: int = 3) -> JobQueue:
    # A fresh engine per call: separate connections behave like separate processes.
    return JobQueue(make_sessionmaker(make_engine(f"sqlite:///{tmp_path / 'q.db'}")), lease, attempts)


def test_concurrent_claims_take_each_job_exactly_once(tmp_path: Path) -> None:
    q = open_queue(tmp_path)
    ids = {q.submit(ALICE, new_job(), max_queue=1000)[0].id for _ in range(40)}
    claimed: list[str] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        mine = open_queue(tmp_path)
        while (job := mine.claim(f"w{n}")) is not None:
            with lock:
                claimed.append(job.id)
            assert mine.complete(job.id, f"w{n}", "o.mp4", "o.png", {}, 0.01)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Counter(claimed) == Counter(ids)  # every job once, none twice
    assert q.stats()["jobs_completed"] == 40 and q.stats()["queue_length"] == 0


def test_claims_are_oldest_first(tmp_path: Path) -> None:
    q = open_queue(tmp_path)
    first = q.submit(ALICE, new_job(), 100)[0]
    q.submit(ALICE, new_job(), 100)
    assert q.claim("w").id == first.id


def test_expired_lease_requeues_and_the_old_worker_can_no_longer_write(tmp_path: Path) -> None:
    q = open_queue(tmp_path, lease=0.3)
    job = q.submit(ALICE, new_job(), 100)[0]
    assert q.claim("dead").id == job.id
    time.sleep(0.5)  # the worker "died": no heartbeat
    again = q.claim("alive")
    assert again is not None and again.id == job.id and again.attempts == 2
    assert q.heartbeat(job.id, "dead", 0.5) is Lease.LOST
    assert not q.complete(job.id, "dead", "x.mp4", "x.png", {}, 1.0)
    assert q.heartbeat(job.id, "alive", 0.5) is Lease.OK
    assert q.complete(job.id, "alive", "y.mp4", "y.png", {}, 1.0)
    done = q.get(ALICE.id, job.id)
    assert done.status == "completed" and done.output == "y.mp4"


def test_an_expired_lease_is_requeued_when_read_not_only_when_a_worker_claims(tmp_path: Path) -> None:
    q = open_queue(tmp_path, lease=0.2)
    jobs = [q.submit(ALICE, new_job(), 100)[0] for _ in range(2)]
    for job in jobs:
        q.claim("dead")
        assert q.heartbeat(job.id, "dead", 0.4) is Lease.OK
    time.sleep(0.3)  # the worker died; every other worker is busy with a long job and claims nothing
    read = q.get(ALICE.id, jobs[0].id)
    assert read.status == "queued" and read.progress == 0.0 and read.started_at is None
    assert [j.status for j in q.list(ALICE.id, 10, None, "asc")[0]] == ["queued", "queued"]
    assert q.stats()["jobs_running"] == 0 and q.stats()["queue_length"] == 2
    again = q.claim("alive")
    assert again.id == jobs[0].id and again.attempts == 2 and again.started_at is not None


def test_heartbeats_keep_a_slow_job(tmp_path: Path) -> None:
    q = open_queue(tmp_path, lease=0.4)
    job = q.submit(ALICE, new_job(), 100)[0]
    q.claim("w")
    for _ in range(4):
        time.sleep(0.2)
        assert q.heartbeat(job.id, "w") is Lease.OK
    assert q.claim("other") is None


def test_a_job_that_keeps_killing_workers_fails(tmp_path: Path) -> None:
    q = open_queue(tmp_path, lease=0.1, attempts=2)
    job = q.submit(ALICE, new_job(), 100)[0]
    for n in range(2):
        assert q.claim(f"w{n}").id == job.id
        time.sleep(0.2)
    assert q.claim("w9") is None
    failed = q.get(ALICE.id, job.id)
    assert failed.status == "failed" and failed.error_code == "worker_lost"


def test_release_hands_back_without_counting_an_attempt(tmp_path: Path) -> None:
    q = open_queue(tmp_path)
    job = q.submit(ALICE, new_job(), 100)[0]
    q.claim("w")
    assert q.release(job.id, "w")
    assert q.get(ALICE.id, job.id).started_at is None
    again = q.claim("w2")
    assert again.id == job.id and again.attempts == 1


def test_cancel_queued_running_and_delete_finished(tmp_path: Path) -> None:
    q = open_queue(tmp_path)
    queued = q.submit(ALICE, new_job(), 100)[0]
    running = q.submit(ALICE, new_job(), 100)[0]
    what, job = q.cancel_or_delete(ALICE.id, queued.id)
    assert what == "cancelled" and job.status == "cancelled"
    assert q.claim("w").id == running.id
    assert q.cancel_or_delete(BOB.id, running.id) == ("missing", None)  # not bob's
    assert q.cancel_or_delete(ALICE.id, running.id)[0] == "cancelling"
    assert q.heartbeat(running.id, "w", 0.3) is Lease.CANCELLED
    assert q.finish(running.id, "w", "cancelled", "cancelled", "stopped")
    assert q.cancel_or_delete(ALICE.id, running.id)[0] == "deleted"
    assert q.get(ALICE.id, running.id) is None


def test_cancel_requested_on_a_dead_worker_ends_cancelled_not_requeued(tmp_path: Path) -> None:
    q = open_queue(tmp_path, lease=0.2)
    job = q.submit(ALICE, new_job(), 100)[0]
    q.claim("dead")
    q.cancel_or_delete(ALICE.id, job.id)
    time.sleep(0.3)
    assert q.claim("w") is None
    assert q.get(ALICE.id, job.id).status == "cancelled"


def test_idempotency_key_returns_the_first_job(tmp_path: Path) -> None:
    q = open_queue(tmp_path)
    a, created_a = q.submit(ALICE, new_job(), 100, "retry-1", "hash1")
    b, created_b = q.submit(ALICE, new_job(), 100, "retry-1", "hash1")
    assert created_a and not created_b and a.id == b.id
    c, created_c = q.submit(BOB, new_job(), 100, "retry-1", "hash1")  # keys are per API key
    assert created_c and c.id != a.id
    with pytest.raises(QueueError) as e:
        q.submit(ALICE, new_job(prompt="other"), 100, "retry-1", "hash2")
    assert e.value.status == 409


def test_idempotency_under_concurrent_retries(tmp_path: Path) -> None:
    open_queue(tmp_path)  # create tables once
    results: list[str] = []

    def post() -> None:
        results.append(open_queue(tmp_path).submit(ALICE, new_job(), 100, "same", "h")[0].id)

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and len(results) == 8
    assert open_queue(tmp_path).stats()["queue_length"] == 1


def test_quotas_and_queue_limit(tmp_path: Path) -> None:
    q = open_queue(tmp_path)
    small = Principal("key_small", "small", max_concurrent=2, max_seconds_per_day=5.0)
    q.submit(small, new_job(2.0), 100)
    q.submit(small, new_job(2.0), 100)
    with pytest.raises(QueueError, match="unfinished jobs") as e:
        q.submit(small, new_job(1.0), 100)
    assert e.value.status == 429
    job = q.claim("w")
    q.complete(job.id, "w", "o", "t", {}, 1.0)
    with pytest.raises(QueueError, match="seconds of video"):
        q.submit(small, new_job(2.0), 100)  # 2 + 2 + 2 > 5
    q.submit(small, new_job(1.0), 100)  # 5 <= 5
    with pytest.raises(QueueError, match="queue holds") as e:
        q.submit(ALICE, new_job(), max_queue=2)
    assert e.value.code == "queue_full"


def test_listing_pages_and_owners(tmp_path: Path) -> None:
    q = open_queue(tmp_path)
    mine = [q.submit(ALICE, new_job(), 100)[0].id for _ in range(5)]
    q.submit(BOB, new_job(), 100)
    page, more = q.list(ALICE.id, 2, None, "desc")
    assert [j.id for j in page] == mine[::-1][:2] and more
    rest, more = q.list(ALICE.id, 10, page[-1].id, "desc")
    assert [j.id for j in rest] == mine[::-1][2:] and not more
    asc, _ = q.list(ALICE.id, 10, None, "asc")
    assert [j.id for j in asc] == mine
    with pytest.raises(QueueError):
        q.list(BOB.id, 10, mine[0], "desc")  # alice's id is no cursor for bob
