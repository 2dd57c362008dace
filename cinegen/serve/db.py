"""Tables and the database engine: SQLite (WAL) by default, PostgreSQL by URL.

Every state change of a job is one short transaction. On SQLite each transaction starts with
`BEGIN IMMEDIATE`, taking the write lock up front: a deferred transaction that reads and then
writes can fail with SQLITE_BUSY without waiting when another process wrote in between, and
several worker processes share the file. On PostgreSQL, claims use `FOR UPDATE SKIP LOCKED`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Engine,
    Float,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from cinegen.errors import UserError

ACTIVE = ("queued", "in_progress")
FINISHED = ("completed", "failed", "cancelled")


class Base(DeclarativeBase):
    pass


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # sha256 of the secret: keys are 256 random bits, so a slow password hash adds nothing.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created_at: Mapped[float] = mapped_column(Float)
    max_concurrent: Mapped[int] = mapped_column(Integer)
    max_seconds_per_day: Mapped[float] = mapped_column(Float)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("owner", "idempotency_key", name="uq_owner_idempotency"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner: Mapped[str] = mapped_column(String(40), index=True)
    status: Mapped[str] = mapped_column(
        String(16), index=True
    )  # queued|in_progress|completed|failed|cancelled
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[float] = mapped_column(Float, index=True)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    run_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)  # wall time of the successful run
    model: Mapped[str] = mapped_column(String(200))
    task: Mapped[str] = mapped_column(String(20))
    seconds: Mapped[float] = mapped_column(Float)  # requested seconds of video, for the daily quota
    params_json: Mapped[str] = mapped_column(Text)  # validated generation parameters
    inputs_json: Mapped[str] = mapped_column(Text, default="{}")  # role -> path relative to storage
    source_id: Mapped[str | None] = mapped_column(String(40), nullable=True)  # remix / extend / loop of
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    worker_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    lease_until: Mapped[float | None] = mapped_column(Float, nullable=True, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error_code: Mapped[str | None] = mapped_column(String(50), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    output: Mapped[str | None] = mapped_column(String(300), nullable=True)  # paths relative to storage
    thumbnail: Mapped[str | None] = mapped_column(String(300), nullable=True)
    draft: Mapped[str | None] = mapped_column(String(300), nullable=True)
    metadata_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False, index=True)

    @property
    def params(self) -> dict[str, Any]:
        return json.loads(self.params_json)

    @property
    def inputs(self) -> dict[str, str]:
        return json.loads(self.inputs_json or "{}")


def make_engine(url: str) -> Engine:
    """Create the engine and the tables (idempotent, so any process may start first)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None turns off pysqlite's own BEGIN handling so ours below is the only one.
        engine = create_engine(
            url, connect_args={"timeout": 60, "check_same_thread": False}, isolation_level=None
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes, which is our threat
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    elif url.startswith("postgresql"):
        engine = create_engine(url, pool_pre_ping=True)
    else:
        raise UserError(f"database URL {url!r} is not supported; use sqlite:///PATH or postgresql://...")
    Base.metadata.create_all(engine)
    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)
