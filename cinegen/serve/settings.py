"""Server settings: one dataclass shared by the API process and the workers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


def default_db_url(storage: Path) -> str:
    return f"sqlite:///{(storage / 'cinegen.db').resolve()}"


@dataclass
class Settings:
    storage: Path = Path("cinegen-data")
    db_url: str | None = None  # None: SQLite inside `storage`
    auth: bool = True  # False only on a loopback host: every request acts as the one local user
    max_queue: int = 1000  # queued jobs over all keys; beyond it POST answers 429 queue_full
    lease_seconds: float = 30.0  # a worker that stops heartbeating for this long loses its job
    max_attempts: int = 3  # a job that kills its worker this many times fails instead of looping
    # request bounds (before any job is created)
    max_body_bytes: int = 64 * 1024  # JSON bodies
    max_upload_bytes: int = 64 * 1024 * 1024  # one uploaded file
    max_upload_pixels: int = 1920 * 1920
    max_upload_frames: int = 60 * 60
    max_upload_seconds: float = 120.0
    max_seconds: float = 60.0  # of generated video per job
    max_pixels: int = 1280 * 720  # of generated video per frame
    max_fps: float = 30.0
    max_steps: int = 100
    # quotas of the local user (no auth) and of the key made on first start; `keys create`'s defaults
    max_concurrent: int = 4
    max_seconds_per_day: float = 600.0
    cors_origins: list[str] = field(default_factory=list)
    model_dir: Path | None = None  # None: the shipped default model (weights/)

    @property
    def url(self) -> str:
        return self.db_url or default_db_url(self.storage)

    @property
    def model(self) -> str:
        """The model's id as GET /v1/models lists it: the name in its config, read without loading it."""
        from cinegen.pipeline import DEFAULT_MODEL_DIR

        model_dir = self.model_dir or DEFAULT_MODEL_DIR
        if (model_dir / "model_index.json").is_file() or not model_dir.exists():  # diffusers dir or hub id
            return model_dir.name if model_dir.exists() else str(self.model_dir)
        config = model_dir / "config.json"
        try:
            return str(json.loads(config.read_text())["name"])
        except (OSError, ValueError, KeyError):
            return "default"
