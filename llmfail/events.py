"""The one event shape used by the store, observers, `events --json` and the TUI.

Event types are stable words (docs/events.md lists them); tools filter on them, so never rename one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

ATTEMPT_FAILED = "attempt_failed"
RETRY = "retry"
BENCHED = "benched"
UNBENCHED = "unbenched"
PROBE = "probe"
FAILOVER = "failover"
PANIC = "panic"
QUOTA_SKIP = "quota_skip"
FAIL_FAST = "fail_fast"
EXHAUSTED = "exhausted"
STREAM_INTERRUPTED = "stream_interrupted"
REQUEST = "request"
DEMOTED = "demoted"  # a slow entry now goes after the fast ones of its chain
RESTORED = "restored"  # ...and is back in its place, fast again
ALERT_FAILED = "alert_failed"  # an alert sink (webhook, command) failed or timed out
CONFIG_CHANGED = "config_changed"  # the config file differs from the one last used with this state DB

EVENT_TYPES = (
    ATTEMPT_FAILED,
    RETRY,
    BENCHED,
    UNBENCHED,
    PROBE,
    FAILOVER,
    PANIC,
    QUOTA_SKIP,
    FAIL_FAST,
    EXHAUSTED,
    STREAM_INTERRUPTED,
    REQUEST,
    DEMOTED,
    RESTORED,
    ALERT_FAILED,
    CONFIG_CHANGED,
)

#: Longest `detail` kept; provider messages can be pages of HTML.
DETAIL_MAX = 500


@dataclass(frozen=True)
class Event:
    """One row of the event log.

    `ts` is epoch seconds (UTC); `id` is assigned by the store (None before).
    `data` holds type-specific extras (for `request`: ok, failovers, ttft_ms,
    usage; for manual actions: user, reason) so the columns stay the ones
    docs/events.md names.
    """

    type: str
    ts: float
    request_id: str | None = None
    chain: str | None = None
    model: str | None = None
    kind: str | None = None
    status: int | None = None
    attempt: int | None = None
    benched_until: float | None = None
    next_model: str | None = None
    latency_ms: float | None = None
    detail: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    id: int | None = None

    def with_id(self, event_id: int) -> Event:
        # A field-for-field copy: `dataclasses.replace` re-runs a frozen `__init__` and was a
        # visible share of every request's cost (one event per request, see benchmarks/).
        stored = object.__new__(Event)
        stored.__dict__.update(self.__dict__, id=event_id)
        return stored

    def to_json(self) -> dict[str, Any]:
        """The documented `--json` shape: times as ISO 8601 UTC, extras flattened under `data`."""
        row = asdict(self)
        row["ts"] = iso(self.ts)
        row["benched_until"] = iso(self.benched_until) if self.benched_until is not None else None
        if self.latency_ms is not None:  # hundredths of a millisecond, like the other times in --json
            row["latency_ms"] = round(self.latency_ms, 2)
        return {"id": row.pop("id"), **row}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=False)


def iso(ts: float) -> str:
    """ISO 8601 UTC with milliseconds, the one timestamp format of every JSON output."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
