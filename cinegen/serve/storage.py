"""Where files live: one root folder; the database stores paths relative to it.

Every name under the root is chosen by the server (job ids, random upload names), and paths
read back from the database are re-checked to stay under the root, so no request-supplied
string can address the file system.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from pathlib import Path


class Storage:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.uploads = self.root / "uploads"
        self.videos = self.root / "videos"
        for folder in (self.uploads, self.videos):
            folder.mkdir(parents=True, exist_ok=True)

    def relative(self, path: Path) -> str:
        return Path(path).resolve().relative_to(self.root).as_posix()

    def absolute(self, rel: str) -> Path:
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"stored path {rel!r} leaves the storage root")
        return path

    def output(self, job_id: str, suffix: str) -> Path:
        """The final path of a job's output: a function of the job id only, so a re-run
        after a crash overwrites (atomically) instead of adding a second file."""
        return self.videos / f"{job_id}{suffix}"

    def copy_to_uploads(self, rel: str) -> str:
        """A copy of a stored file under a fresh upload name. A follow-up job (remix, extend, loop)
        owns a copy of its source video, so deleting either video never takes the other's file."""
        source = self.absolute(rel)
        target = self.uploads / f"{uuid.uuid4().hex}{source.suffix}"
        shutil.copyfile(source, target)
        return self.relative(target)

    def remove(self, rels: list[str]) -> None:
        for rel in rels:
            with contextlib.suppress(FileNotFoundError, ValueError):
                self.absolute(rel).unlink()
