"""Which store a process uses: one rule for every command, the dashboard and the library.

    --db PATH|URL  >  $LLMFAIL_DB  >  the config's `state:` (url, password_env, namespace)
                   >  state.db in the user state dir

A path (or `sqlite:///path`) is SQLite; `redis://`, `rediss://`, `unix://` and
`valkey://` are Redis/Valkey (the `redis` package is imported only then). The
config's `password_env` and `namespace` apply to whichever URL is chosen, so a
team can keep them in the shared config and point `--db` at another server for
a one-off (`state copy`, a staging check). A password is never written in a URL
we were given and never printed: `redact_url` is what every message shows.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from . import Store


_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^@/]*)@")


class StateSection(Protocol):
    """What selection reads from the config's `state:` section (`llmfail.config.StateConfig`)."""

    @property
    def url(self) -> str: ...

    @property
    def password_env(self) -> str | None: ...

    @property
    def namespace(self) -> str | None: ...


def redact_url(target: str) -> str:
    """`target` fit to print: a password in the URL's user part becomes `***`.

    `redis://:secret@host:6379/0` → `redis://:***@host:6379/0`,
    `redis://user:secret@host` → `redis://user:***@host`; a URL without one, or a
    path, comes back unchanged. Every error, log line, `info` and `check` shows
    store URLs through this."""
    found = _USERINFO.match(target)
    if not found:
        return target
    user, sep, _password = found.group(2).partition(":")
    shown = f"{user}:***" if sep else user
    return f"{found.group(1)}{shown}@{target[found.end() :]}"


@dataclass(frozen=True)
class Selection:
    """The chosen store: `target` (a path or URL), which rule chose it, and the config's extras."""

    target: str
    source: str  # "--db", "$LLMFAIL_DB", "config state.url" or "default"
    namespace: str | None = None
    password_env: str | None = None

    @property
    def shown(self) -> str:
        """The target as printed (password redacted)."""
        return redact_url(self.target)

    @property
    def is_redis(self) -> bool:
        return self.sqlite_path() is None

    def same_store(self, other: Selection) -> bool:
        """Whether both name one store (`valkey://` is `redis://`, `valkeys://` is `rediss://`; a namespace is a store of its own)."""

        def key(selection: Selection) -> tuple[str, str | None]:
            path = selection.sqlite_path()
            if path is not None:
                return str(path.resolve()), None
            target = selection.target
            if target[:9].lower() == "valkey://":
                target = "redis://" + target[9:]
            elif target[:10].lower() == "valkeys://":
                target = "rediss://" + target[10:]
            return target, selection.namespace or ""

        return key(self) == key(other)

    def sqlite_path(self) -> Path | None:
        """The SQLite file this selection names; None for a Redis URL. An unknown scheme is the
        store's usage error (exit 2, naming the known ones)."""
        from . import sqlite_file

        return sqlite_file(self.target)

    def exists(self) -> bool:
        """Whether there is anything to read yet (a read never creates a SQLite file; a server
        is always worth asking)."""
        path = self.sqlite_path()
        return path is None or path.exists()

    @property
    def kind(self) -> str:
        return "redis" if self.is_redis else "sqlite"

    @property
    def size_bytes(self) -> int | None:
        """The SQLite file with its WAL and shared-memory files (None: Redis, or no file yet)."""
        path = self.sqlite_path()
        if path is None or not path.is_file():
            return None
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())

    def to_json(self) -> dict[str, object]:
        """`info --json`'s `store`: what is used and why, never a password."""
        path = self.sqlite_path()
        return {
            "url": self.shown if path is None else str(path),
            "kind": self.kind,
            "source": self.source,
            "namespace": self.namespace,
            "exists": None if path is None else path.exists(),
            "size_bytes": self.size_bytes,
        }

    def open(self, *, busy_timeout: float | None = None) -> Store:
        """The store, opened (SQLite created and migrated if needed; Redis connects on first use)."""
        from . import open_store

        return open_store(
            self.target, namespace=self.namespace, password_env=self.password_env, busy_timeout=busy_timeout
        )


def select_store(
    db: str | None = None,
    state: StateSection | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Selection:
    """The store by the precedence above. `db` is `--db` (or the library's `db_path`);
    `state` is the loaded config's `state:` section, if any."""
    env = os.environ if environ is None else environ
    extras = {"namespace": state.namespace, "password_env": state.password_env} if state is not None else {}
    if db:
        return Selection(db, "--db", **extras)
    if env.get("LLMFAIL_DB"):
        return Selection(env["LLMFAIL_DB"], "$LLMFAIL_DB", **extras)
    if state is not None and state.url:
        return Selection(state.url, "config state.url", **extras)
    from ..paths import default_state_db

    return Selection(str(default_state_db()), "default", **extras)


_STATE_KEY = re.compile(rb"^state\s*:", re.MULTILINE)


def names_state(path: Path) -> bool:
    """Whether the config file at `path` has a top-level `state:` key: a byte scan, so commands
    that otherwise never parse the config (ls-benched, events) stay fast when it has none."""
    try:
        return _STATE_KEY.search(path.read_bytes()) is not None
    except OSError:
        return False
