"""Sequential GraphQL requests per second against the emulator on loopback."""

from __future__ import annotations

import time

import requests
from harness import api_key, emulator

QUERY = "{ viewer { projects { id name } } }"


def measure(count: int = 1000) -> dict:
    with emulator() as (url, config_dir):
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {api_key(config_dir)}"
        for _ in range(20):  # warm the connection and the query cache
            http.post(f"{url}/graphql", json={"query": QUERY}).raise_for_status()
        started = time.perf_counter()
        for _ in range(count):
            http.post(f"{url}/graphql", json={"query": QUERY}).raise_for_status()
        elapsed = time.perf_counter() - started
    return {"requests": count, "seconds": round(elapsed, 3), "per_second": round(count / elapsed)}


if __name__ == "__main__":
    print(measure())
