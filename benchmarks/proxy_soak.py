"""A soak of ``llmcache serve``: ``python -m benchmarks.proxy_soak [--minutes 10]``.

Client threads send mixed traffic for the given time — repeated questions (hits), new ones
(misses) and streams of both — through one ``llmcache serve`` on a memory + Redis tier;
half-way, Redis is killed and started again, empty, on the same port. It counts every request
that did not end in a whole 200 answer, and reads the proxy's resident memory after a warm-up
and at the end. The loop is bounded in time and in requests. The figures go to
``proxy-soak.json`` and the "Proxy" section of ``RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx2

from llmcache.tools.simulator import Simulator

from .proxy import HERE, free_port, process, redis_server, rewrite_results, serve_argv
from .workload import chat_request

__all__ = ["main"]

MAX_REQUESTS = 5_000_000  # a bound besides the clock
QUESTIONS = 200  # the repeated questions: hits once each has been asked


def rss_mb(pid: int) -> float:
    """Return a process's resident memory in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def one(client: httpx2.Client, rng: random.Random, counts: Counter[str], serial: int) -> None:
    """Send one request of the mix and count its outcome."""
    counts["sent"] += 1
    draw = rng.random()
    fresh = draw < 0.25 or 0.85 <= draw < 0.90  # a new question: a miss
    tag = f"soak-new-{serial}-{rng.random()}" if fresh else f"soak-{rng.randrange(QUESTIONS)}"
    body = chat_request(tag)
    stream = draw >= 0.85
    try:
        if stream:
            body["stream"] = True
            with client.stream("POST", "/v1/chat/completions", json=body) as response:
                data = b"".join(response.iter_bytes())
                ok = response.status_code == 200 and data.rstrip().endswith(b"data: [DONE]")
                status = response.headers.get("llmcache-status", "")
            counts["streams"] += 1
        else:
            response = client.post("/v1/chat/completions", json=body)
            ok = response.status_code == 200 and bool(response.json().get("choices"))
            status = response.headers.get("llmcache-status", "")
    except (httpx2.HTTPError, ValueError) as exc:
        counts["failed"] += 1
        counts[f"failed: {type(exc).__name__}"] += 1
        return
    if not ok:
        counts["failed"] += 1
    elif status in ("hit", "stale"):
        counts["hits"] += 1
    else:
        counts["misses"] += 1


def soak(minutes: float, threads: int) -> dict[str, Any]:
    """Run the soak; return its figures."""
    workdir = Path(tempfile.mkdtemp(prefix="llmcache-proxy-soak-"))
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    serial = iter(range(MAX_REQUESTS))
    with Simulator() as sim, redis_server(workdir) as redis:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        argv = serve_argv(port, sim, ["memory://?max_entries=20000", redis.url])
        env = {"XDG_CACHE_HOME": str(workdir / "cache")}
        with process(argv, workdir / "serve.log", url + "/healthz", env) as pid:
            began = time.monotonic()
            end = began + minutes * 60
            # the memory tier (20,000 entries) fills in the first minutes: RSS is read after
            warm = began + min(120.0, minutes * 12)
            rss: dict[str, float] = {}

            def worker(seed: int) -> None:
                rng = random.Random(seed)
                local: Counter[str] = Counter()
                with httpx2.Client(base_url=url, timeout=30) as client:
                    while time.monotonic() < end:
                        with lock:
                            number = next(serial, None)
                        if number is None:
                            break
                        one(client, rng, local, number)
                with lock:
                    counts.update(local)

            pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
            for thread in pool:
                thread.start()
            samples: list[tuple[float, float]] = []  # (minute, MB), every 30 s
            restart = began + minutes * 30
            restarted_at = None
            while time.monotonic() < end:
                now = time.monotonic()
                if restarted_at is None and now >= restart:
                    restarted_at = (now - began) / 60
                    redis.restart()
                samples.append(((now - began) / 60, rss_mb(pid)))
                if now >= warm and "start" not in rss:
                    rss["start"] = samples[-1][1]
                time.sleep(max(0.0, min(30.0, restart - now if now < restart else 30.0)))
            for thread in pool:
                thread.join(timeout=120)
            rss["end"] = rss_mb(pid)
            samples.append(((time.monotonic() - began) / 60, rss["end"]))
    return {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "minutes": minutes,
        "threads": threads,
        "mix": "60% repeated questions, 25% new ones, 15% streams (a third of them new)",
        "restart_at_minutes": round(restarted_at or 0.0, 1),
        "requests": counts["sent"],
        "hits": counts["hits"],
        "misses": counts["misses"],
        "streams": counts["streams"],
        "failed": counts["failed"],
        "failures": {k: v for k, v in counts.items() if k.startswith("failed: ")},
        "upstream_calls": sim.count(),
        "rss_start_mb": rss["start"],
        "rss_end_mb": rss["end"],
        "rss_mb": [[round(m, 1), round(mb, 1)] for m, mb in samples],
    }


def main(argv: list[str] | None = None) -> int:
    """Soak, write ``proxy-soak.json`` and rewrite the "Proxy" section of ``RESULTS.md``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.proxy_soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    data = soak(args.minutes, args.threads)
    (HERE / "proxy-soak.json").write_text(json.dumps(data, indent=2) + "\n")
    if (HERE / "proxy.json").exists():
        rewrite_results()
    print(json.dumps(data, indent=2))
    return 0 if data["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
