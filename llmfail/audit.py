"""Who did what: the operator stamped on manual events, and the audit of config file changes.

Apart from `llmfail.actions` because every request path needs `audit_config` (the engine
records a changed config before its first write) while the operator commands' module is
not needed by a one-shot `llmfail run` (`tests/test_imports.py`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from . import events as ev
from .events import Event

if TYPE_CHECKING:
    from .config import Config
    from .journal import Journal
    from .store import Store


def operator() -> dict[str, str]:
    """Who is acting, for the event log: the OS user and the host.

    `getpass.getuser()` fails in containers whose uid has no passwd entry; the
    uid is still worth recording there.
    """
    import getpass
    import socket  # imported here: only manual events need them, not `ls-benched`'s start-up

    try:
        user = getpass.getuser()
    except Exception:
        user = f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return {"user": user, "host": socket.gethostname()}


def config_digest(config: Config) -> str | None:
    """The SHA-256 of the config's file as it is now; None for a config that is not a readable file."""
    import hashlib

    if config.path.startswith("<"):
        return None
    try:
        with open(config.path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None


def audit_config(
    store: Store,
    config: Config,
    now: float,
    *,
    journal: Journal | None = None,
    reason: str = "config file changed",
    always: bool = False,
    digest: str | None = None,
) -> Event | None:
    """A `config_changed` event when the config file differs from the one last used with this
    state DB (its SHA-256 is kept in the DB's meta, per file path).

    Config edits change what every process does (chains, cooldowns, alerts), so they
    belong in the same audit trail as manual benches: who (OS user, host), when, and
    which file. The first use of a file is recorded silently (nothing changed yet);
    a config that is not a readable file (built-in, parsed from a string) is skipped.
    `always` records the event even then, or when the file is unchanged: a running
    process that loads its config again (`Engine.reload`) says so whatever the file holds.
    `digest` is the file's hash when it was loaded (default: the file's hash now), for a
    caller that audits a config after its file may have been edited again.
    The event goes through `journal` (or a bare `Journal(store)`); the stored event is returned.
    """
    digest = digest or config_digest(config)
    path = config.path
    previous = None
    if digest is not None:
        path = os.path.abspath(config.path)
        previous = store.swap_meta(f"config_sha256:{path}", digest)
    changed = previous is not None and previous != digest
    if not (changed or always):
        return None
    if changed:
        detail = f"{path} changed (sha256 {(previous or '')[:12]} -> {(digest or '')[:12]})"
    else:
        detail = f"{path} {reason}" + (" (unchanged)" if previous is not None else "")
    event = Event(
        type=ev.CONFIG_CHANGED,
        ts=now,
        detail=detail,
        data={
            **operator(),
            "reason": reason,
            "path": path,
            "previous_sha256": previous,
            "sha256": digest,
        },
    )
    if journal is None:
        from .journal import Journal

        journal = Journal(store)
    return journal.write(event)
