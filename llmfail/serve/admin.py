"""The gateway's operator API: the CLI's bench, unbench, ls-benched and events over HTTP.

Off unless `LLMFAIL_ADMIN_TOKEN` is set; then every `/admin/` request needs that token
as a bearer token (compared in constant time). The handlers call the engine's operator
API, which runs the same `llmfail.actions` code as `llmfail bench` and friends, so a
bench made here is the same row, with the same event, as one made at a terminal. The
event names the caller: the `X-Llmfail-User` header when sent (else `admin-api`), and
the address it came from.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from aiohttp import web

from ..errors import LlmfailError, UsageError
from .app import GATEWAY, Handler, bearer, error_response

#: Longest caller name kept from `X-Llmfail-User`.
USER_MAX = 64

#: Most events one `GET /admin/events` returns (the newest ones; page on with `after_id`).
EVENTS_MAX = 1000


def add_admin_routes(app: web.Application) -> None:
    app.router.add_get("/admin/benches", _guarded(list_benches))
    app.router.add_post("/admin/bench", _guarded(bench))
    app.router.add_delete("/admin/bench/{model:.+}", _guarded(unbench))
    app.router.add_get("/admin/events", _guarded(events))


def _guarded(handler: Handler) -> Handler:
    """The handler behind the admin token; any llmfail error as a one-line JSON error."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        token = request.app[GATEWAY].admin_token or ""
        if not hmac.compare_digest(bearer(request), token.encode()):
            return error_response(401, "the admin API needs LLMFAIL_ADMIN_TOKEN as a bearer token", "invalid_api_key")
        try:
            return await handler(request)
        except UsageError as error:
            return error_response(400, _line(error), "invalid_request")
        except LlmfailError as error:  # the store cannot be reached: operator actions never pretend
            return error_response(503, _line(error), "state_unavailable")

    return guarded


def _line(error: LlmfailError) -> str:
    return f"{error.message} ({error.hint})" if error.hint else error.message


def _who(request: web.Request) -> dict[str, str]:
    name = request.headers.get("X-Llmfail-User", "").strip()[:USER_MAX] or "admin-api"
    return {"user": name, "host": request.remote or "unknown", "via": "llmfail serve admin API"}


async def list_benches(request: web.Request) -> web.Response:
    rows = request.app[GATEWAY].engine.benches()
    return web.json_response([row.to_json() for row in rows])


async def bench(request: web.Request) -> web.Response:
    try:
        body = json.loads(await request.read())
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise UsageError('the body must be a JSON object with "model" (and optionally "for", "reason", "replace")')
    for_ = body.get("for")
    if for_ is not None and not isinstance(for_, str | int | float):
        raise UsageError('"for" must be seconds or a duration like "10m"')
    reason = body.get("reason")
    row = request.app[GATEWAY].engine.bench(
        body["model"],
        for_,
        str(reason) if reason is not None else None,
        replace=bool(body.get("replace", False)),
        who=_who(request),
    )
    return web.json_response(row.to_json())


async def unbench(request: web.Request) -> web.Response:
    model = request.match_info["model"]
    reason = request.query.get("reason")
    lifted = request.app[GATEWAY].engine.unbench(model, reason=reason, who=_who(request))
    return web.json_response({"unbenched": lifted})


async def events(request: web.Request) -> web.Response:
    """`?since=10m` (a duration), `after_id=N` (to page on), `type=`, `chain=`, `model=`, `limit=`;
    oldest first, like `llmfail events --json`."""
    from ..actions import EventFilter, parse_types
    from ..durations import parse_duration

    gateway = request.app[GATEWAY]
    query = request.query
    since = None
    if "since" in query:
        try:
            since = gateway.clock() - parse_duration(query["since"])
        except ValueError as error:
            raise UsageError(f"since: {error}") from None
    try:
        limit = int(query.get("limit", 0))
        after_id = int(query["after_id"]) if "after_id" in query else None
    except ValueError:
        raise UsageError("limit and after_id must be integers") from None
    if limit < 0:
        raise UsageError("limit must be 0 (as many as one answer holds) or more")
    limit = min(EVENTS_MAX, limit or EVENTS_MAX)  # 0 is "all", as for `llmfail events --limit 0`
    where = EventFilter(since, query.get("model"), query.get("chain"), parse_types(query.getall("type", [])))
    kwargs: dict[str, Any] = {**where.query(), "limit": limit}
    if after_id is not None:
        kwargs["after_id"] = after_id
    else:
        kwargs["newest"] = True
    rows = gateway.engine.store.events(**kwargs)
    return web.json_response({"events": [event.to_json() for event in rows]})
