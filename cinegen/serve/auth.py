"""API keys: created by `cinegen keys create`, stored hashed, sent as `Authorization: Bearer`."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from cinegen.errors import UserError
from cinegen.serve.db import ApiKey

KEY_PREFIX = "cg_"
LOCAL_OWNER = "local"  # the one owner of every job when the server runs without auth


@dataclass(frozen=True)
class Principal:
    """Who a request acts for, with that key's quotas."""

    id: str
    name: str
    max_concurrent: int
    max_seconds_per_day: float


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(
    sessions: sessionmaker, name: str, max_concurrent: int, max_seconds_per_day: float
) -> tuple[ApiKey, str]:
    """Store a new key; return its row and the secret, which is shown once and never stored."""
    name = name.strip()
    if not name or len(name) > 200:
        raise UserError(f"key name {name!r} must be 1 to 200 characters")
    if max_concurrent < 1:
        raise UserError(f"--max-concurrent {max_concurrent} must be at least 1")
    if max_seconds_per_day <= 0:
        raise UserError(f"--max-seconds-per-day {max_seconds_per_day} must be positive")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        id="key_" + uuid.uuid4().hex[:16],
        name=name,
        key_hash=hash_key(secret),
        created_at=time.time(),
        max_concurrent=max_concurrent,
        max_seconds_per_day=max_seconds_per_day,
    )
    with sessions.begin() as s:
        s.add(row)
    return row, secret


def count_keys(sessions: sessionmaker) -> int:
    with sessions() as s:
        return len(s.scalars(select(ApiKey.id)).all())


def lookup(sessions: sessionmaker, secret: str) -> Principal | None:
    if not secret.startswith(KEY_PREFIX) or len(secret) > 200:
        return None
    with sessions() as s:
        row = s.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(secret), ApiKey.disabled.is_(False)))
        if row is None:
            return None
        return Principal(row.id, row.name, row.max_concurrent, row.max_seconds_per_day)
