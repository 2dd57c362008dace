"""Helpers to run the real server in tests: a tiny random model, a server process on a loopback
port, API keys. Used by tests/test_serve_*.py; kept in the package so every test module (and
anyone testing a deployment) imports the same harness."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def make_test_model(model_dir: Path, seed: int = 0) -> Path:
    """A randomly initialised model of the `test` preset: the real pipeline, seconds per job on a CPU."""
    import torch

    from cinegen.backends.native import CONFIG_FILE, NativeBackend
    from cinegen.config import MODEL_PRESETS
    from cinegen.models.autoencoder import CausalVAE
    from cinegen.models.transformer import SpacetimeDiT

    if not (model_dir / CONFIG_FILE).is_file():
        cfg = MODEL_PRESETS["test"]
        torch.manual_seed(seed)
        NativeBackend.save(model_dir, cfg, CausalVAE(cfg.autoencoder), SpacetimeDiT(cfg.denoiser))
    return model_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env() -> dict[str, str]:
    # The test machine is shared: one thread per process keeps several workers from fighting.
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cinegen.serve.cli", *args],
        capture_output=True,
        text=True,
        env=child_env(),
        check=check,
        timeout=120,
    )


@dataclass
class Proc:
    """A `cinegen serve` or `cinegen worker` child process with its log file."""

    args: list[str]
    log: Path
    popen: subprocess.Popen | None = None

    def start(self) -> Proc:
        out = open(self.log, "ab")  # noqa: SIM115 - lives as long as the process
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "cinegen.serve.cli", *self.args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child_env(),
            start_new_session=True,
        )
        return self

    def kill(self) -> None:
        """SIGKILL the process alone (its own children survive, as in a real crash)."""
        if self.popen and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)

    def kill_all(self) -> None:
        """SIGKILL the process and everything it started (a machine losing power, an OOM kill)."""
        if self.popen and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def stop(self, timeout: float = 20) -> None:
        """Stop the process and everything it started."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        try:  # anything left in its session (workers of a killed server)
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Server:
    """`cinegen serve` on a free loopback port over `storage` (SQLite inside it)."""

    storage: Path
    model: Path
    workers: int = 1
    extra: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> Server:
        args = [
            "serve",
            "--storage",
            str(self.storage),
            "--model",
            str(self.model),
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            *self.extra,
        ]
        self.proc = Proc(args, self.storage.parent / f"{self.storage.name}-serve.log").start()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.popen.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.proc.text()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server did not start in {timeout}s:\n{self.proc.text()}")

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()

    def new_key(self, name: str, *extra: str) -> str:
        out = cli("keys", "create", "--name", name, "--storage", str(self.storage), *extra).stdout
        return out.strip().splitlines()[-1]

    def client(self, key: str | None, timeout: float = 30) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)


def wait_for(
    client: httpx.Client,
    video_id: str,
    statuses: tuple[str, ...] = ("completed", "failed", "cancelled"),
    timeout: float = 120,
    min_progress: float | None = None,
) -> dict:
    """Poll a video until its status is one of `statuses` (and its progress reaches `min_progress`)."""
    deadline = time.time() + timeout
    while True:
        video = client.get(f"/v1/videos/{video_id}").json()
        if video["status"] in statuses and (min_progress is None or video["progress"] >= min_progress):
            return video
        if time.time() > deadline:
            raise TimeoutError(
                f"{video_id} still {video['status']} ({video['progress']:.2f}) after {timeout}s"
            )
        time.sleep(0.1)
