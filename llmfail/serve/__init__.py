"""`llmfail serve`: the chains behind an OpenAI-compatible HTTP endpoint, for apps in any language.

A client (an official OpenAI SDK, curl, LangChain, a Go or Node service) sends an
ordinary Chat Completions request whose `model` is a chain name; the gateway walks
the chain with the same `Engine` a Python app would import, so benches, events,
the dashboard and the operator commands are shared with every other llmfail process.

The package is thin over the engine:

- `openai_shape`: OpenAI's request, answer, stream-chunk and error JSON, both ways;
- `app`: the aiohttp application (chat, models, health), its middlewares (client
  keys, the concurrency cap, the access log) and the disconnect-cancels rule;
- `admin`: the operator API (benches, events), the same actions as the CLI;
- `server`: binding, signals (SIGTERM drains, SIGHUP reloads), start and stop.

aiohttp is imported only here, so no other command pays for it.
"""

from __future__ import annotations
