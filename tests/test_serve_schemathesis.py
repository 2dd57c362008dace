"""Schemathesis against the live server's OpenAPI schema: no 5xx anywhere, every response as
documented, and every input the schema forbids answered with a documented 4xx JSON error."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cinegen.serve.testing import Server, child_env, make_test_model

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection"


def test_schemathesis_finds_no_server_errors(tmp_path: Path) -> None:
    st = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if st is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[dev]')")
    # No workers: fuzzed jobs stay queued instead of occupying the CPU; quotas high enough that
    # valid requests reach the job-creation code rather than stopping at 429.
    server = Server(
        tmp_path / "data", make_test_model(tmp_path / "model"), workers=0, extra=["--max-queue", "1000000"]
    ).start()
    try:
        key = server.new_key("fuzz", "--max-concurrent", "1000000", "--max-seconds-per-day", "1e12")
        run = subprocess.run(
            [
                st,
                "run",
                f"{server.url}/openapi.json",
                "--header",
                f"Authorization: Bearer {key}",
                "--checks",
                CHECKS,
                "--max-examples",
                "15",
                "--seed",
                "1",
                "--generation-database",
                "none",
                "--workers",
                "1",
            ],
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=400,
            cwd=tmp_path,
        )
        report = run.stdout[-6000:] + run.stderr[-2000:]
        assert run.returncode == 0, report
        assert " passed" in run.stdout and "failed" not in run.stdout.split("SUMMARY")[-1], report
        assert "Traceback" not in server.proc.text()  # no unhandled exception, even one answered 500
    finally:
        server.stop()
