"""The store backends the contract suite runs against: one line each in `BACKENDS`.

A backend is a factory `(directory, name) -> StoreTarget` that makes a fresh,
empty store and says where it is. `directory` is a private, existing temporary
directory (for a file-backed store); `name` is unique in the test session (a
key prefix or namespace for a store on a shared server). A factory may be
called several times in one test — the state machine opens a fresh store per
example — and may `pytest.skip` when what it needs (a server binary) is
missing. Tests open the target themselves, and hand it to child processes,
which open their own connections: a `StoreTarget` is plain, picklable data.

Adding a backend to every contract, state-machine and multi-process test is
one line here: `BACKENDS["redis"] = redis_target`, where `redis_target` starts
(once per session) a server on a free loopback port and returns
`StoreTarget(url, namespace=name)`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from llmfail.store import StoreTarget

from .redis_server import redis_target

StoreFactory = Callable[[Path, str], StoreTarget]


def sqlite_target(directory: Path, name: str) -> StoreTarget:
    """A SQLite file of its own, given as a `sqlite:///` URL (so the URL form is what runs)."""
    return StoreTarget(f"sqlite://{(directory / f'{name}.db').resolve()}")


BACKENDS: dict[str, StoreFactory] = {
    "sqlite": sqlite_target,
    "redis": redis_target,
}
