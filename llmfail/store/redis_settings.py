"""`llmfail check` against a Redis/Valkey server: settings under which it would silently lose state.

A Redis that evicts keys under memory pressure, keeps nothing on disk, or is too
old for the scripts is not an error at start-up — everything works until the
day it silently forgets every bench. So `check` connects and says so:

- `maxmemory-policy` other than `noeviction`: under memory pressure the server
  drops keys it chooses (a bench, the event stream) instead of refusing writes;
- no persistence (`appendonly no` and no RDB `save` points): a restart empties it;
- a server older than Redis 7.0 (Valkey reports its Redis-compatible version too).

Managed services often disable `CONFIG`; then the check says it could not read
the settings and what to verify by hand. Imported only for a Redis URL.
"""

from __future__ import annotations

from .select import Selection

MIN_VERSION = (7, 0)


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def server_warnings(selection: Selection) -> list[str]:
    """What is risky about the selected Redis server, one sentence each (empty when nothing is).

    An unreachable server is one warning too: `check` validates a config and may
    run where the fleet's Redis is not reachable (a CI runner)."""
    import redis

    from .redis import RedisStore

    shown = selection.shown
    store = RedisStore.from_url(selection.target, namespace=selection.namespace, password_env=selection.password_env)
    client = store._client

    try:
        try:
            info = client.info("server")
        except redis.RedisError as error:
            return [f"cannot reach shared state {shown} ({_reason(error)}): its settings were not checked"]
        warnings: list[str] = []
        version = str(info.get("redis_version", "0"))
        if _version(version) < MIN_VERSION:
            warnings.append(f"{shown} runs Redis {version}; llmfail needs Redis >= 7.0 or Valkey >= 7.2 "
                            "(its scripts use 7.0 commands)")
        try:
            settings = {**client.config_get("maxmemory-policy"), **client.config_get("appendonly"),
                        **client.config_get("save")}
        except redis.RedisError as error:
            warnings.append(f"cannot read the settings of {shown} ({_reason(error)}): make sure maxmemory-policy "
                            "is noeviction and persistence (AOF) is on")
            return warnings
        policy = str(settings.get("maxmemory-policy", ""))
        if policy and policy != "noeviction":
            warnings.append(f"{shown} has maxmemory-policy {policy}: when memory runs short it evicts keys "
                            "(benches, events) silently; set maxmemory-policy noeviction")
        if str(settings.get("appendonly", "")) == "no" and not str(settings.get("save", "")).strip():
            warnings.append(f"{shown} keeps nothing on disk (appendonly no, no save points): a restart forgets "
                            "every bench and the event log; set appendonly yes (appendfsync everysec)")
        return warnings
    finally:
        store.close()


def _reason(error: BaseException) -> str:
    from ..redact import redact

    return redact(str(error).splitlines()[0] if str(error) else type(error).__name__) or type(error).__name__
