"""A fake provider for every entry of a chain, behind one httpx transport.

The chain is copied with each entry pointed at a host of its own
(`e0.simulate.invalid`, `e1…`, the reserved `.invalid` domain), its provider
renamed so the engine builds one adapter per entry, and every credential's
key variable dropped. So: the real adapter of each entry's provider type
builds the request and parses the answer, the real classifier and engine run,
and nothing leaves the process — the config's base URLs are never contacted
and no key is read from the environment. A `mock` entry becomes an
OpenAI-protocol fake (which is what `mock` is) that keeps its configured
`fail`/`latency`/`reply`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from urllib.parse import urlsplit

import httpx

from ..config import Alerts, Config, Credential, Entry
from ..errors import UsageError
from ..fakes import FakeBehaviour, FakeTransport, Fault
from ..fakes.protocols import PROTOCOLS
from ..providers.base import Runtime

DOMAIN = "simulate.invalid"


def _protocol(entry: Entry) -> str:
    kind = entry.provider.type
    protocol = "openai" if kind == "mock" else kind
    if protocol not in PROTOCOLS:
        raise UsageError(
            f"simulate has no fake {kind!r} provider yet (entry {entry.model})",
            hint=f"fakes exist for: {', '.join(sorted({*PROTOCOLS, 'mock'}))}",
        )
    return protocol


def _isolated(entry: Entry, host: str, protocol: str) -> Entry:
    """The entry pointed at its own fake host (keeping its base URL's path), with no key to read."""
    path = urlsplit(entry.provider.base_url).path if entry.provider.base_url else "/v1"
    provider = replace(
        entry.provider,
        name=f"{entry.provider.name}@{host}",
        type=protocol,
        base_url=f"http://{host}{path.rstrip('/')}",
        api_key_env=None,
        mock=None,
    )
    return replace(entry, provider=provider, credentials=tuple(Credential(None) for _ in entry.credentials))


class FakeProviders(httpx.AsyncBaseTransport):
    """Routes each request by host to the fake of the entry it was built for."""

    def __init__(self, config: Config, chain_name: str, runtime: Runtime, *, latency: float) -> None:
        chain = config.chain(chain_name)
        entries: list[Entry] = []
        self._fakes: dict[str, FakeTransport] = {}
        self._own: dict[str, tuple[Fault, ...]] = {}  # a mock entry's configured faults
        self._models: dict[str, str] = {}  # host -> entry model
        for index, entry in enumerate(chain.entries):
            protocol = _protocol(entry)
            host = f"e{index}.{DOMAIN}"
            isolated = _isolated(entry, host, protocol)
            mock = entry.provider.mock if entry.provider.type == "mock" else None
            own = (Fault(mock.fail, mock.fail_rate),) if mock is not None and mock.fail else ()
            behaviour = FakeBehaviour(
                faults=own,
                latency=mock.latency if mock is not None and mock.latency else latency,
                reply=mock.reply if mock is not None else None,
                hang=entry.policy.timeout,  # a silent server costs the client its whole timeout
            )
            self._fakes[host] = FakeTransport(protocol, behaviour, runtime)
            self._own[host] = own
            self._models[host] = entry.model
            entries.append(isolated)
        self.chain = replace(chain, entries=tuple(entries))
        # A simulated outage must never reach the operator's real alert sinks.
        self.config = replace(
            config,
            chains={chain.name: self.chain},
            providers={e.provider.name: e.provider for e in entries},
            alerts=Alerts(),
        )

    def set_faults(self, faults: Mapping[str, tuple[Fault, ...]]) -> None:
        """Inject `faults` (by entry model) from now on. An entry named here uses these faults
        instead of its own (a `mock` entry's `fail:`): the command line says what this run tests."""
        for host, fake in self._fakes.items():
            fake.behaviour = replace(fake.behaviour, faults=faults.get(self._models[host]) or self._own[host])

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        fake = self._fakes.get(request.url.host)
        if fake is None:  # never fall through to the network
            raise httpx.ConnectError(f"no simulated provider at {request.url.host}", request=request)
        return await fake.handle_async_request(request)
