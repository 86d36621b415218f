"""A second host, as a process of its own: it watches one bench key through its own RedisStore and
prints when it sees the bench change. Run as a script (`python tests/redis_bench_reader.py URL
NAMESPACE delivered|lose`) by the cross-host test and by `benchmarks/redis_roundtrips.py`, so the
test and the benchmark measure the same reader.

`lose` drops every pub/sub invalidation: only the store's periodic re-read can notice a bench.
Each line is `REASON TIME` (the bench's reason, when it was seen); a bench with reason `stop` ends it.
"""

from __future__ import annotations

import sys
import time

from llmfail.store import redis as backend
from llmfail.store.redis import RedisStore

KEY = "shared/model"


def main(url: str, namespace: str, messages: str) -> None:
    store = RedisStore.from_url(url, namespace=namespace)
    if messages == "lose":
        forget = backend._StateCache.forget
        backend._StateCache.forget = lambda cache, model: forget(cache, None) if model is None else None  # type: ignore[method-assign]
    seen = None
    print("ready", flush=True)
    while True:
        state = store.states([KEY]).get(KEY)
        reason = state.reason if state is not None and state.is_benched(time.time()) else None
        if reason != seen:
            seen = reason
            if reason == "stop":
                break
            print(f"{reason} {time.time()!r}", flush=True)
        time.sleep(0.001)


if __name__ == "__main__":
    main(*sys.argv[1:4])
