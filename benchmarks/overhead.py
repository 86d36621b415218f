"""Engine overhead and failover cost: one client and one case per process, at each concurrency asked.

    python benchmarks/overhead.py --port P --client llmfail --case failover -c 1,32

prints one JSON line per concurrency (`-c 1,32`): requests/s, p50/p99 latency (ms), process CPU per
request (µs), and the server's hit counts per model during the measurement (so
a reader can check that, say, every failover request really tried the primary).

Clients (each does the same work: build a JSON body, POST it, read and parse
the answer):

    aiohttp        the floor: raw aiohttp, a hand-written "on 429 call the
                   next model" loop for the failover case
    httpx          the same with a raw httpx.AsyncClient (default transport)
    llmfail        Engine.complete() with the real state store, events on: a
                   fresh SQLite file, or the store `--db` names (a Redis URL,
                   with `--namespace`); --transport default|httpx|aiohttp
                   picks the HTTP transport (aiohttp: llmfail's own
                   `llmfail.transport.AiohttpTransport`, also for `httpx`)
    litellm        LiteLLM's Router with fallbacks a -> b -> c
    gateway        raw aiohttp, one POST per request to an OpenAI-compatible gateway
                   (`--url`, `--model`, `--key`): `llmfail serve` or LiteLLM's
                   proxy walking the chain (benchmarks/gateway.py starts them)

Cases (chain of three entries on the benchmark server, see server.py):

    healthy    ok-a, ok-b, ok-c: the primary answers
    benched    busy-a benched for an hour (LiteLLM: in cooldown), ok-b, ok-c:
               the skip path; the primary must see no traffic
    failover   toolarge-a, ok-b, ok-c: the primary answers every request with
               429 and every request fails over to ok-b. OpenAI's 429 "Request
               too large ... (TPM)" is used because it is a 429 that waiting
               never fixes: llmfail files it as context_length (no retry, no
               bench, next entry), so the primary really is tried by every
               request, as in the hand-written loop. (An ordinary 429 benches
               the primary after its first failure and later requests take the
               skip path, which is the `benched` case.) LiteLLM runs with
               cooldowns disabled for the same reason.

Every loop is bounded by a request count and a wall-clock limit; only
127.0.0.1 is contacted (name resolution of any other host is refused in this
process, which also keeps LiteLLM from fetching its model price list).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from server import hits

CHAINS = {
    "healthy": ["ok-a", "ok-b", "ok-c"],
    "benched": ["busy-a", "ok-b", "ok-c"],
    "failover": ["toolarge-a", "ok-b", "ok-c"],
}
MESSAGES = [{"role": "user", "content": "ping"}]
BLOCKED: list[str] = []  # hosts this process tried to resolve and was refused


def loopback_only() -> None:
    """Refuse to resolve (and so to contact) any host but the loopback."""
    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in (None, "127.0.0.1", "localhost", "::1"):
            BLOCKED.append(str(name))
            raise socket.gaierror(f"benchmarks contact 127.0.0.1 only, not {name!r}")
        return real(host, *args, **kwargs)

    socket.getaddrinfo = guarded  # type: ignore[assignment]


# ---------------------------------------------------------------------------- clients


def aiohttp_session() -> Any:
    """The floor's HTTP client: raw aiohttp, 100 pooled connections, no timeout."""
    import aiohttp

    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100), timeout=aiohttp.ClientTimeout(total=None))


async def aiohttp_client(base: str, case: str) -> tuple[Callable[[], Awaitable[str]], Callable[[], Awaitable[None]]]:
    session = aiohttp_session()
    url = f"{base}/chat/completions"
    chain = CHAINS[case] if case == "failover" else CHAINS[case][1:] if case == "benched" else CHAINS[case]

    async def one() -> str:
        for model in chain:
            async with session.post(url, json={"model": model, "messages": MESSAGES}) as resp:
                body = await resp.read()
                if resp.status == 429 or resp.status >= 500:
                    continue  # the hand-written fallback: try the next model
                return json.loads(body)["choices"][0]["message"]["content"]
        raise RuntimeError("every model failed")

    return one, session.close


async def gateway_client(
    url: str, model: str, key: str | None
) -> tuple[Callable[[], Awaitable[str]], Callable[[], Awaitable[None]]]:
    """The floor's client, sending every request once to a gateway that walks the chain itself."""
    session = aiohttp_session()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"model": model, "messages": MESSAGES}

    async def one() -> str:
        async with session.post(f"{url}/chat/completions", json=body, headers=headers) as resp:
            answer = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {answer[:200]!r}")
            return json.loads(answer)["choices"][0]["message"]["content"]

    return one, session.close


async def httpx_client(
    base: str, case: str, transport: str
) -> tuple[Callable[[], Awaitable[str]], Callable[[], Awaitable[None]]]:
    import httpx

    if transport == "aiohttp":
        from llmfail.transport import AiohttpTransport

        client = httpx.AsyncClient(timeout=None, transport=AiohttpTransport())
    else:
        client = httpx.AsyncClient(timeout=None)
    url = f"{base}/chat/completions"
    chain = CHAINS[case] if case == "failover" else CHAINS[case][1:] if case == "benched" else CHAINS[case]

    async def one() -> str:
        for model in chain:
            resp = await client.post(url, json={"model": model, "messages": MESSAGES})
            if resp.status_code == 429 or resp.status_code >= 500:
                continue
            return resp.json()["choices"][0]["message"]["content"]
        raise RuntimeError("every model failed")

    return one, client.aclose


async def llmfail_client(
    base: str, case: str, transport: str, db: str | None = None, namespace: str | None = None
) -> tuple[Callable[[], Awaitable[str]], Callable[[], Awaitable[None]]]:
    from llmfail.config import parse_config
    from llmfail.engine import Engine
    from llmfail.store import StoreTarget

    entries = ", ".join(f"bench/{m}" for m in CHAINS[case])
    config = parse_config(
        f"providers:\n  bench: {{type: openai, base_url: '{base}'}}\nchains:\n  bench: [{entries}]\n", "<bench>"
    )
    db = db or os.path.join(tempfile.mkdtemp(prefix="llmfail-bench-"), "state.db")
    store = StoreTarget(db, namespace).open()
    if case == "benched":
        now = time.time()
        store.record_failure(f"bench/{CHAINS[case][0]}", now=now, kind="transient", status=503, bench_for=3600.0)
    kwargs: dict[str, Any] = {}
    if transport == "httpx":
        import httpx

        kwargs["transport"] = httpx.AsyncHTTPTransport()
    elif transport == "aiohttp":
        from llmfail.transport import AiohttpTransport

        kwargs["transport"] = AiohttpTransport()
    engine = Engine(config, store, **kwargs)

    async def one() -> str:
        return (await engine.complete("bench", MESSAGES)).text

    async def close() -> None:
        await engine.aclose()
        if "transport" in kwargs:
            await kwargs["transport"].aclose()
        store.close()

    return one, close


async def litellm_client(base: str, case: str) -> tuple[Callable[[], Awaitable[str]], Callable[[], Awaitable[None]]]:
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # no price list download at import
    os.environ.setdefault("LITELLM_TELEMETRY", "False")
    import litellm
    from litellm import Router

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    names = ["a", "b", "c"]
    model_list = [
        {
            "model_name": name,
            "litellm_params": {"model": f"openai/{model}", "api_base": base, "api_key": "sk-bench"},
            "model_info": {"id": f"dep-{name}"},
        }
        for name, model in zip(names, CHAINS[case], strict=True)
    ]
    router = Router(
        model_list=model_list,
        fallbacks=[{"a": ["b", "c"]}],
        num_retries=0,
        cooldown_time=3600,
        disable_cooldowns=case == "failover",
    )
    if case == "benched":
        router.cooldown_cache.add_deployment_to_cooldown(
            model_id="dep-a",
            original_exception=Exception("benched for the benchmark"),
            exception_status=503,
            cooldown_time=3600,
        )

    async def one() -> str:
        resp = await router.acompletion(model="a", messages=MESSAGES)
        return resp.choices[0].message.content  # type: ignore[no-any-return, union-attr]

    async def close() -> None:
        await asyncio.sleep(0)

    return one, close


# ---------------------------------------------------------------------------- the load loop


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def measure(
    one: Callable[[], Awaitable[str]], concurrency: int, seconds: float, max_requests: int, warmup: int, port: int
) -> dict[str, Any]:
    """Closed loop: `concurrency` workers, each sending its next request when the last one ends."""
    warm_until = time.perf_counter() + max(1.0, seconds)
    for _ in range(warmup // concurrency + 1):  # connections opened, caches warm (bounded in time too)
        await asyncio.gather(*(one() for _ in range(concurrency)))
        if time.perf_counter() > warm_until:
            break
    hits(port, reset=True)
    latencies: list[float] = []
    errors: list[str] = []
    budget = [max_requests]
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        while budget[0] > 0 and time.perf_counter() < stop_at:
            budget[0] -= 1
            began = time.perf_counter()
            try:
                answer = await one()
                if answer != "pong":
                    errors.append(f"unexpected answer {answer!r}")
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
            latencies.append(time.perf_counter() - began)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    counts = hits(port)
    latencies.sort()
    n = len(latencies)
    return {
        "requests": n,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "rps": n / wall if wall else 0.0,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "cpu_us": cpu / n * 1e6 if n else float("nan"),
        "hits": counts,
    }


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    base = f"http://127.0.0.1:{args.port}/v1"
    if args.client == "aiohttp":
        one, close = await aiohttp_client(base, args.case)
    elif args.client == "httpx":
        one, close = await httpx_client(base, args.case, args.transport)
    elif args.client == "llmfail":
        one, close = await llmfail_client(base, args.case, args.transport, args.db, args.namespace)
    elif args.client == "litellm":
        one, close = await litellm_client(base, args.case)
    elif args.client == "gateway":
        one, close = await gateway_client(args.url, args.model, args.key)
    else:
        raise SystemExit(f"unknown client {args.client}")
    results = []
    try:
        for concurrency in args.concurrency:
            result = await measure(one, concurrency, args.seconds, args.max_requests, args.warmup, args.port)
            result.update(client=args.client, case=args.case, concurrency=concurrency, transport=args.transport)
            results.append(result)
    finally:
        await close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--client", choices=["aiohttp", "httpx", "llmfail", "litellm", "gateway"], required=True)
    parser.add_argument("--case", choices=sorted(CHAINS), required=True)
    parser.add_argument(
        "-c",
        "--concurrency",
        default="1,32",
        type=lambda v: [int(c) for c in v.split(",")],
        help="comma-separated: each is measured in turn in this process",
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="measurement wall-clock limit")
    parser.add_argument("--max-requests", type=int, default=50_000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--transport", choices=["default", "httpx", "aiohttp"], default="default")
    parser.add_argument("--db", help="llmfail's store: a path or URL (default: a fresh SQLite file)")
    parser.add_argument("--namespace", help="the Redis namespace of --db (default: the store's own)")
    parser.add_argument("--url", help="gateway client: the gateway's base URL (ending in /v1)")
    parser.add_argument("--model", help="gateway client: the model (chain) name to ask for")
    parser.add_argument("--key", help="gateway client: a bearer token to send")
    args = parser.parse_args()
    loopback_only()
    results = asyncio.run(main_async(args))
    for result in results:
        result["blocked_hosts"] = sorted(set(BLOCKED))
        print(json.dumps(result))


if __name__ == "__main__":
    main()
