"""The `mock` provider: an OpenAI-protocol fake answering in-process, for demos and tests.

It goes through the real OpenAI adapter over a `FakeTransport`, so a mock
failover exercises exactly the code a real one does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from ..config import MockBehaviour
from .base import ChatRequest, Runtime
from .openai import OpenAIAdapter

if TYPE_CHECKING:
    from ..fakes import FakeBehaviour


def behaviour_of(mock: MockBehaviour | None) -> FakeBehaviour:
    from ..fakes import FakeBehaviour, Fault

    mock = mock or MockBehaviour()
    faults = (Fault(mock.fail, mock.fail_rate),) if mock.fail else ()
    return FakeBehaviour(faults=faults, latency=mock.latency, reply=mock.reply)


class MockAdapter(OpenAIAdapter):
    def build(
        self, request: ChatRequest, wire_model: str, api_key: str | None
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        _, headers, body = super().build(request, wire_model, None)
        return "http://mock.invalid/v1/chat/completions", headers, body

    def transport(self, runtime: Runtime) -> httpx.AsyncBaseTransport | None:
        from ..fakes import FakeTransport

        return FakeTransport("openai", behaviour_of(self.provider.mock), runtime)
