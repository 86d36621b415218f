"""Where llmfail looks for its config and keeps its state (SPEC §2 discovery order)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

APP = "llmfail"


def config_candidates(explicit: str | None = None) -> list[Path]:
    """Config files in the order they are tried: --config, $LLMFAIL_CONFIG, ./chains.yaml, user dir."""
    if explicit:
        return [Path(explicit)]
    env = os.environ.get("LLMFAIL_CONFIG")
    if env:
        return [Path(env)]
    from platformdirs import user_config_dir

    return [Path("chains.yaml"), Path(user_config_dir(APP)) / "chains.yaml"]


def find_config(explicit: str | None = None) -> Path | None:
    """The first existing candidate; an explicit path is returned even if missing (to be reported)."""
    return config_source(explicit)[0]


def config_source(explicit: str | None = None) -> tuple[Path | None, str]:
    """The config file discovery picks and how it was found (for `llmfail info`):
    `--config`, `$LLMFAIL_CONFIG`, `./chains.yaml`, `user config dir`, or None and `none found`."""
    candidates = config_candidates(explicit)
    if explicit:
        return candidates[0], "--config"
    if os.environ.get("LLMFAIL_CONFIG"):
        return candidates[0], "$LLMFAIL_CONFIG"
    for path, how in zip(candidates, ("./chains.yaml", "user config dir"), strict=True):
        if path.is_file():
            return path, how
    return None, "none found"


def state_db(explicit: str | None = None) -> Path:
    """--db PATH, else $LLMFAIL_DB, else state.db in the user state dir."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("LLMFAIL_DB")
    if env:
        return Path(env)
    from platformdirs import user_state_dir

    return Path(user_state_dir(APP)) / "state.db"


@dataclass(frozen=True)
class StoreDescription:
    """Which state store a command uses, for people and `info --json` (a URL's password redacted)."""

    url: str  # the path or URL, password redacted
    kind: str  # "sqlite" or "redis"
    source: str  # "--db", "$LLMFAIL_DB" or "default"
    path: Path | None = None  # the SQLite file (None for Redis)

    @property
    def exists(self) -> bool | None:
        """Whether the SQLite file exists (None: not a file, nothing to check without connecting)."""
        return None if self.path is None else self.path.exists()

    @property
    def size_bytes(self) -> int | None:
        """The SQLite file with its WAL and shared-memory files (None: Redis, or no file yet)."""
        if self.path is None or not self.path.exists():
            return None
        return sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"))
                   if p.exists())

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "kind": self.kind, "source": self.source, "exists": self.exists,
                "size_bytes": self.size_bytes}


def describe_store(explicit: str | None = None) -> StoreDescription:
    """The store `--db` (else $LLMFAIL_DB, else the default file) names; nothing is opened or created.

    The one place that says which store is in use: `info` prints it and read commands
    use it to say that a named DB file does not exist.
    """
    from .store import sqlite_file

    target = explicit or os.environ.get("LLMFAIL_DB") or None
    source = "--db" if explicit else "$LLMFAIL_DB" if target else "default"
    path = sqlite_file(target)
    if path is None:
        return StoreDescription(redact_url(target or ""), "redis", source)
    return StoreDescription(str(path), "sqlite", source, path)


def redact_url(url: str) -> str:
    """`redis://user:***@host:6379/0`: a URL's password never reaches an output."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
