"""llmfail's error tree, the kinds of failure, and the exit code each maps to.

    LlmfailError                 every error llmfail raises on purpose (has .hint)
    ├── UsageError               bad command-line input            -> exit 2
    ├── ConfigError              bad config file (every problem)   -> exit 2
    ├── StateError               the state DB cannot be used        -> exit 1
    │   └── StoreUnavailable     shared state (Redis) unreachable right now
    ├── ProviderError            one classified provider failure    -> exit 1
    │   └── FailFast             a failure that stops the walk (original kind/status kept)
    ├── ChainExhausted           every entry failed; .causes in order
    │   └── AllBenched           on_all_benched: fail and nothing is live
    └── StreamInterrupted        a stream failed after tokens reached the caller

The library raises these; only the CLI turns them into one line and an exit code
(`exit_code_for`), so an app importing llmfail never sees `SystemExit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any


def plural(count: int, word: str, many: str | None = None) -> str:
    """`1 chain`, `2 chains`, `0 entries` (with `many` for irregular words): every count people read."""
    return f"{count} {word if count == 1 else many or word + 's'}"


class Kind(StrEnum):
    """What went wrong, which decides what the engine does next (the kinds table in docs/concepts.md)."""

    RATE_LIMITED = "rate_limited"
    TRANSIENT = "transient"
    TIMEOUT = "timeout"
    AUTH = "auth"
    QUOTA = "quota"
    CONTEXT_LENGTH = "context_length"
    INVALID_REQUEST = "invalid_request"
    CONTENT_FILTER = "content_filter"
    CANCELLED = "cancelled"


#: Kinds caused by the request itself, not by the model's health: they never
#: bench and never count as a failure of the model.
REQUEST_KINDS = frozenset({Kind.CONTEXT_LENGTH, Kind.INVALID_REQUEST, Kind.CONTENT_FILTER})


class ExitCode(IntEnum):
    """The process exit codes every command uses (listed for users in docs/cli.md)."""

    OK = 0
    """The work succeeded."""
    FAILED = 1
    """The work failed: chain exhausted, fail-fast error, unmet simulate expectation."""
    USAGE = 2
    """The command line or the config file is wrong; nothing was attempted."""
    INTERRUPTED = 130
    """Ctrl-C (SIGINT), as shells report it."""


class LlmfailError(Exception):
    """Base of every deliberate llmfail error; `hint` tells the user what to do."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        #: filled by the engine on errors that end a request: every attempt made
        #: (`result.Attempt`), the request id and the time spent, for reports
        self.attempts: list[Any] = []
        self.request_id: str | None = None
        self.latency_ms: float = 0.0


class UsageError(LlmfailError):
    exit_code = ExitCode.USAGE


class StateError(LlmfailError):
    """The state store (a SQLite file or a Redis server) cannot be opened, migrated or written."""


class StoreUnavailable(StateError):
    """Shared state cannot be reached right now (Redis down, hung, read-only, loading, failing over).

    Transient by nature, unlike a corrupt file: the store guard opens its breaker and
    tries again later, while operator commands exit 1 with this one-line message.
    """


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong in a config file, located for the user."""

    file: str
    line: int  # 1-based; 0 when unknown
    column: int  # 1-based; 0 when unknown
    path: str  # dotted key path, e.g. "chains.prod[1].timeout"
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        key = f" {self.path}:" if self.path else ""
        return f"{where}:{key} {self.message}"

    def to_json(self) -> dict[str, Any]:
        """`check --json`'s problem row (line and column null when unknown)."""
        return {
            "file": self.file,
            "line": self.line or None,
            "column": self.column or None,
            "path": self.path or None,
            "message": self.message,
        }


class ConfigError(LlmfailError):
    """A config file that cannot be used; carries every problem found, not only the first."""

    exit_code = ExitCode.USAGE

    def __init__(self, problems: list[ConfigProblem], *, hint: str | None = None) -> None:
        self.problems = problems
        first = str(problems[0]) if problems else "invalid configuration"
        more = f" (and {plural(len(problems) - 1, 'more problem', 'more problems')})" if len(problems) > 1 else ""
        super().__init__(first + more, hint=hint or "run `llmfail check` to list every problem")


class ProviderError(LlmfailError):
    """One failed attempt, classified. The message is already redacted."""

    def __init__(
        self,
        kind: Kind,
        message: str,
        *,
        status: int | None = None,
        model: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        reset_at: float | None = None,
        should_retry: bool | None = None,
        reason: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.kind = Kind(kind)
        self.status = status
        self.model = model
        self.code = code
        #: seconds the server asked us to wait (retry-after-ms, retry-after, RetryInfo)
        self.retry_after = retry_after
        #: epoch seconds when the server says its limit resets (x-ratelimit-reset-*, ...)
        self.reset_at = reset_at
        #: the server's x-should-retry header, when it sent one
        self.should_retry = should_retry
        #: the provider's own explanation for a content filter or billing stop
        self.reason = reason

    def __str__(self) -> str:
        """`openai/gpt-4o: stream cut after 16 characters (HTTP 200)`; the kind when there is no status."""
        model = f"{self.model}: " if self.model else ""
        return f"{model}{self.message} ({f'HTTP {self.status}' if self.status is not None else self.kind})"


class FailFast(ProviderError):
    """A failure the policy says must stop the walk (e.g. on_content_filter: fail).

    It keeps the original kind, status and message, so callers can treat it like
    the provider's own error rather than unwrap a chain error. `partial_text` is
    the text a streaming caller was already handed when the failure came (None
    when nothing was shown), as on `StreamInterrupted`.
    """

    partial_text: str | None = None

    @classmethod
    def from_error(cls, error: ProviderError, partial_text: str | None = None) -> FailFast:
        fail = cls(
            error.kind,
            error.message,
            status=error.status,
            model=error.model,
            code=error.code,
            retry_after=error.retry_after,
            reset_at=error.reset_at,
            should_retry=error.should_retry,
            reason=error.reason,
            hint=error.hint,
        )
        fail.partial_text = partial_text
        return fail


class ChainExhausted(LlmfailError):
    """Every entry of the chain failed or was skipped; `causes` holds each failure in order."""

    def __init__(self, chain: str, causes: list[ProviderError], *, hint: str | None = None) -> None:
        self.chain = chain
        self.causes = causes
        last = f"; last: {causes[-1]}" if causes else ""
        super().__init__(
            f"chain {chain!r} exhausted after {plural(len(causes), 'failure')}{last}",
            hint=hint or "see `llmfail events --since 10m` for every attempt",
        )

    @property
    def kind(self) -> Kind | None:
        return self.causes[-1].kind if self.causes else None

    @property
    def status(self) -> int | None:
        return self.causes[-1].status if self.causes else None


class AllBenched(ChainExhausted):
    """on_all_benched: fail, and every entry is benched; says when the first bench ends."""

    def __init__(self, chain: str, first_until: float | None, first_model: str | None) -> None:
        self.first_until = first_until
        self.first_model = first_model
        super().__init__(chain, [], hint="`llmfail ls-benched` shows the benches; `llmfail unbench MODEL` lifts one")
        if first_until is not None:
            from datetime import UTC, datetime

            when = datetime.fromtimestamp(first_until, UTC).isoformat(timespec="seconds")
            self.message = f"every entry of chain {chain!r} is benched; the first bench ({first_model}) ends at {when}"
        else:
            self.message = f"every entry of chain {chain!r} is benched"
        self.args = (self.message,)


class StreamInterrupted(LlmfailError):
    """The stream failed after tokens were handed to the caller (mid_stream: error)."""

    def __init__(self, model: str, partial_text: str, cause: ProviderError) -> None:
        self.model = model
        self.partial_text = partial_text
        self.cause = cause
        where = "" if cause.model == model else f"{model}: "
        super().__init__(f"{where}{cause}", hint="set `mid_stream: restart` to restart the answer on the next entry")

    @property
    def kind(self) -> Kind:
        return self.cause.kind

    @property
    def status(self) -> int | None:
        return self.cause.status


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit code the CLI uses for an error that reached the top."""
    if isinstance(error, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(error, LlmfailError):
        return error.exit_code
    return ExitCode.FAILED
