"""`cinegen serve`, `cinegen worker` and `cinegen keys create`: registered into the main CLI by
`add_commands`; also runnable alone as `python -m cinegen.serve.cli ...`."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from cinegen.errors import UserError
from cinegen.serve.settings import Settings

log = logging.getLogger("cinegen.serve")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        metavar="URL",
        help="database URL (default: SQLite in --storage); "
        "postgresql://... to share the queue between machines",
    )
    p.add_argument(
        "--storage",
        metavar="DIR",
        type=Path,
        default=Path("cinegen-data"),
        help="folder for uploads and outputs (workers elsewhere must see the same folder)",
    )
    p.add_argument(
        "--model", metavar="DIR", type=Path, default=None, help="model directory (default: the shipped model)"
    )


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    s = subparsers.add_parser("serve", help="run the HTTP API, the web page and workers")
    _common(s)
    s.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--workers", type=int, default=1, help="worker processes to start here (0: API only)")
    s.add_argument(
        "--max-queue", type=int, default=Settings.max_queue, help="queued jobs before POST answers 429"
    )
    s.add_argument(
        "--lease-seconds",
        type=float,
        default=Settings.lease_seconds,
        help="a job whose worker is silent this long goes back to the queue",
    )
    s.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow browser calls from this origin (repeatable; default: CORS off)",
    )
    s.add_argument("--no-auth", action="store_true", help="no API keys (only with a loopback --host)")
    s.add_argument(
        "--max-concurrent",
        type=int,
        default=Settings.max_concurrent,
        help="unfinished jobs at once of the local user (--no-auth) and of the key made on first start",
    )
    s.add_argument(
        "--max-seconds-per-day",
        type=float,
        default=Settings.max_seconds_per_day,
        help="seconds of video per rolling 24 hours, for the same",
    )
    s.add_argument("--max-seconds", type=float, default=Settings.max_seconds, help="longest video per job")
    s.add_argument("--max-pixels", type=int, default=Settings.max_pixels, help="largest frame per job")
    s.add_argument("--max-upload-mb", type=float, default=Settings.max_upload_bytes / 2**20)
    s.add_argument("--max-upload-pixels", type=int, default=Settings.max_upload_pixels)
    s.add_argument("--device", default="auto", help="device for the workers started here")
    s.set_defaults(func=serve)

    w = subparsers.add_parser("worker", help="run a worker on the queue of a server's database")
    _common(w)
    w.add_argument("--lease-seconds", type=float, default=Settings.lease_seconds)
    w.add_argument("--device", default="auto")
    w.add_argument("--max-jobs", type=int, default=None, help="exit after this many jobs")
    w.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    w.set_defaults(func=worker)

    k = subparsers.add_parser("keys", help="manage API keys")
    ks = k.add_subparsers(dest="keys_command", required=True)
    c = ks.add_parser("create", help="create a key; prints it on the last line (shown only once)")
    _common(c)
    c.add_argument("--name", required=True)
    c.add_argument(
        "--max-concurrent", type=int, default=Settings.max_concurrent, help="unfinished jobs at once"
    )
    c.add_argument(
        "--max-seconds-per-day",
        type=float,
        default=Settings.max_seconds_per_day,
        help="seconds of video per rolling 24 hours",
    )
    c.set_defaults(func=keys_create)


def _settings(args: argparse.Namespace, **extra) -> Settings:
    return Settings(storage=args.storage, db_url=args.db, model_dir=args.model, **extra)


def _sessions(settings: Settings):
    from cinegen.serve.db import make_engine, make_sessionmaker

    return make_sessionmaker(make_engine(settings.url))


def keys_create(args: argparse.Namespace) -> int:
    from cinegen.serve.auth import create_key

    row, secret = create_key(
        _sessions(_settings(args)), args.name, args.max_concurrent, args.max_seconds_per_day
    )
    print(
        f"created key {row.id} for {row.name!r} (max {row.max_concurrent} concurrent jobs, "
        f"{row.max_seconds_per_day:g} s of video per day); it is shown only this once:"
    )
    print(secret)
    return 0


def worker(args: argparse.Namespace) -> int:
    from cinegen.serve.worker import Worker

    _check_lease(args.lease_seconds)
    _logging()
    w = Worker(
        _settings(args, lease_seconds=args.lease_seconds), device=args.device, parent_pid=args.parent_pid
    )
    w.install_signal_handlers()
    w.run(max_jobs=args.max_jobs)
    return 0


def _check_lease(seconds: float) -> None:
    # Heartbeats come every third of a lease; below a second they are a busy loop of database
    # writes, and at 0 every running job expired at once and was re-queued until it failed.
    if not seconds >= 1:
        raise UserError(f"--lease-seconds {seconds:g} must be at least 1")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from cinegen.serve.app import create_app
    from cinegen.serve.auth import count_keys, create_key

    if args.no_auth and not _is_loopback(args.host):
        raise UserError(f"--no-auth is only allowed with a loopback --host, not {args.host!r}")
    if args.workers < 0 or args.max_queue < 1:
        raise UserError("--workers must be >= 0 and --max-queue >= 1")
    if args.max_concurrent < 1 or not args.max_seconds_per_day > 0:
        raise UserError(
            f"--max-concurrent {args.max_concurrent} must be at least 1 and "
            f"--max-seconds-per-day {args.max_seconds_per_day:g} positive"
        )
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port} is not a port; use 0..65535 (0: any free one)")
    _check_lease(args.lease_seconds)
    # Each of these at 0 or below refused every job or upload, with a message naming the limit as the
    # request's fault ("seconds 2 is over this server's limit of 0").
    for flag, value in (
        ("--max-seconds", args.max_seconds),
        ("--max-pixels", args.max_pixels),
        ("--max-upload-mb", args.max_upload_mb),
        ("--max-upload-pixels", args.max_upload_pixels),
    ):
        if not value > 0:
            raise UserError(f"{flag} {value:g} must be positive")
    _logging()
    settings = _settings(
        args,
        auth=not args.no_auth,
        max_queue=args.max_queue,
        lease_seconds=args.lease_seconds,
        cors_origins=args.cors_origin,
        max_seconds=args.max_seconds,
        max_pixels=args.max_pixels,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_upload_pixels=args.max_upload_pixels,
        max_concurrent=args.max_concurrent,
        max_seconds_per_day=args.max_seconds_per_day,
    )
    app = create_app(settings)
    url = f"http://{args.host}:{args.port}/"
    if settings.auth and count_keys(_sessions(settings)) == 0:
        # First start: make a key so the page works with no setup; the URL fragment never reaches
        # the server or its logs, the page moves it to the browser's local storage.
        _row, secret = create_key(
            _sessions(settings), "default", settings.max_concurrent, settings.max_seconds_per_day
        )
        print(f"created the first API key (shown only once):\n{secret}\nopen {url}#key={secret}", flush=True)
    pool = WorkerPool(args, settings)
    pool.start(args.workers)
    # uvicorn shuts down on SIGTERM and then raises the signal again; left to its default action,
    # that kills this process before the `finally` below, and the workers ran on as orphans, a
    # running one holding its job until its current step ended. As SystemExit it unwinds here.
    # The pool also sends it when a worker refuses its settings: then serve exits 2, as the worker did.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(2 if pool.refused else 0))
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False)
    finally:
        pool.stop()
    return 0


class WorkerPool:
    """Worker subprocesses of `cinegen serve`, restarted if they die."""

    def __init__(self, args: argparse.Namespace, settings: Settings) -> None:
        self.cmd = [
            sys.executable,
            "-m",
            "cinegen.serve.cli",
            "worker",
            "--db",
            settings.url,
            "--storage",
            str(settings.storage),
            "--lease-seconds",
            str(settings.lease_seconds),
            "--device",
            args.device,
            "--parent-pid",
            str(os.getpid()),
        ]
        if settings.model_dir is not None:
            self.cmd += ["--model", str(settings.model_dir)]
        self.procs: list[subprocess.Popen] = []
        self.stopping = threading.Event()
        self.refused = False  # a worker exited with a UserError: its settings cannot work

    def start(self, n: int) -> None:
        self.procs = [subprocess.Popen(self.cmd) for _ in range(n)]
        if n:
            threading.Thread(target=self._watch, name="worker-pool", daemon=True).start()

    def _watch(self) -> None:
        while not self.stopping.wait(2.0):
            for i, p in enumerate(self.procs):
                if p.poll() is None or self.stopping.is_set():
                    continue
                if p.returncode == 2:
                    # Exit status 2 is a UserError (a missing --model, a --device without its
                    # hardware): every restart failed alike, every few seconds, while the API took
                    # jobs that no worker could run. Stop the server instead.
                    log.error("worker pid %d refused its settings (the error above); stopping", p.pid)
                    self.refused = True
                    os.kill(os.getpid(), signal.SIGTERM)
                    return
                log.warning("worker pid %d exited with %s; starting another", p.pid, p.returncode)
                self.procs[i] = subprocess.Popen(self.cmd)

    def stop(self) -> None:
        self.stopping.set()
        for p in self.procs:
            if p.poll() is None:
                p.terminate()  # the worker hands its job back to the queue and exits
        deadline = time.time() + 15
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cinegen")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        print(f"cinegen: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
