"""Jobs are never lost: a worker or the whole server killed with SIGKILL mid-job, then restarted;
every job completes exactly once."""

from __future__ import annotations

import re
import signal
import sqlite3
from pathlib import Path

import pytest

from cinegen.serve.testing import Proc, Server, make_test_model, wait_for

SMALL = {"prompt": "a red ball moves right on a white background", "size": "64x64", "seconds": 1, "steps": 2}
SLOW = {**SMALL, "size": "96x96", "seconds": 2, "steps": 100}
LEASE = "3"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_test_model(tmp_path_factory.mktemp("recovery_model"))


def attempts(storage: Path, video_id: str) -> int:
    with sqlite3.connect(storage / "cinegen.db") as db:
        return db.execute("SELECT attempts FROM jobs WHERE id = ?", (video_id,)).fetchone()[0]


def completions(*logs: str) -> list[str]:
    return [m for log in logs for m in re.findall(r"completed (video_[0-9a-f]{32})", log)]


def check_outputs(storage: Path, ids: list[str]) -> None:
    """Exactly one mp4 and one thumbnail per job and nothing else: no duplicates, no temp files left."""
    names = sorted(p.name for p in (storage / "videos").iterdir())
    assert names == sorted([f"{i}.mp4" for i in ids] + [f"{i}.png" for i in ids])


def test_worker_killed_mid_job_its_job_completes_after_restart(tmp_path: Path, model: Path) -> None:
    server = Server(tmp_path / "data", model, workers=0, extra=["--lease-seconds", LEASE]).start()
    worker_args = [
        "worker",
        "--storage",
        str(server.storage),
        "--model",
        str(model),
        "--lease-seconds",
        LEASE,
    ]
    first = Proc(worker_args, tmp_path / "worker1.log").start()
    second = None
    try:
        with server.client(server.new_key("k")) as c:
            slow = c.post("/v1/videos", json=SLOW).json()["id"]
            others = [c.post("/v1/videos", json={**SMALL, "seed": n}).json()["id"] for n in range(3)]
            wait_for(c, slow, ("in_progress",), min_progress=0.05, timeout=60)
            first.kill()  # SIGKILL: no clean-up, no hand-back
            assert c.get(f"/v1/videos/{slow}").json()["status"] == "in_progress"  # until its lease runs out

            second = Proc(worker_args, tmp_path / "worker2.log").start()
            for vid in [slow, *others]:
                assert wait_for(c, vid, timeout=120)["status"] == "completed"
            listed = c.get("/v1/videos", params={"limit": 100}).json()["data"]
            assert sorted(v["id"] for v in listed) == sorted([slow, *others])  # none lost, none added
        assert attempts(server.storage, slow) == 2
        assert f"claimed {slow} (attempt 2)" in second.text()
        done = completions(first.text(), second.text())
        assert sorted(done) == sorted([slow, *others])  # each job completed exactly once
        check_outputs(server.storage, [slow, *others])
    finally:
        first.stop()
        if second:
            second.stop()
        server.stop()


def test_server_killed_mid_job_the_job_completes_after_restart(tmp_path: Path, model: Path) -> None:
    server = Server(tmp_path / "data", model, workers=1, extra=["--lease-seconds", LEASE]).start()
    key = server.new_key("k")
    logs = []
    try:
        with server.client(key) as c:
            slow = c.post("/v1/videos", json=SLOW).json()["id"]
            queued = c.post("/v1/videos", json=SMALL).json()["id"]
            wait_for(c, slow, ("in_progress",), min_progress=0.05, timeout=60)
        server.proc.kill_all()  # the API and its worker, all at once
        logs.append(server.proc.text())
        server.proc.log.unlink()
        server.start()  # same storage, same database, same port
        with server.client(key) as c:
            for vid in (slow, queued):
                assert wait_for(c, vid, timeout=120)["status"] == "completed"
            assert len(c.get("/v1/videos").json()["data"]) == 2
        assert attempts(server.storage, slow) == 2
        logs.append(server.proc.text())
        assert sorted(completions(*logs)) == sorted([slow, queued])
        check_outputs(server.storage, [slow, queued])
    finally:
        server.stop()


def test_sigterm_stops_the_workers_and_hands_back_the_running_job(tmp_path: Path, model: Path) -> None:
    server = Server(tmp_path / "data", model, workers=1, extra=["--lease-seconds", LEASE]).start()
    key = server.new_key("k")
    try:
        with server.client(key) as c:
            slow = c.post("/v1/videos", json=SLOW).json()["id"]
            wait_for(c, slow, ("in_progress",), min_progress=0.05, timeout=60)
        server.proc.popen.send_signal(signal.SIGTERM)  # systemd stop, docker stop, kill
        # uvicorn re-raised the SIGTERM after its shutdown and killed serve (-15) before it stopped
        # its workers; they ran on as orphans, a running one holding its job until its step ended.
        assert server.proc.popen.wait(30) == 0, server.proc.text()
        with sqlite3.connect(server.storage / "cinegen.db") as db:
            status, worker = db.execute("SELECT status, worker_id FROM jobs WHERE id = ?", (slow,)).fetchone()
        assert (status, worker) == ("queued", None)  # handed back before serve exited
        assert f"handed back {slow}" in server.proc.text()
        server.start()
        with server.client(key) as c:
            assert wait_for(c, slow, timeout=120)["status"] == "completed"
        assert attempts(server.storage, slow) == 1  # a hand-back is not a crash
    finally:
        server.stop()
