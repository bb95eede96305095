"""The test mode: 1,000 calls replayed from a recording against the same calls served from
the memory tier.

``python -m benchmarks.testmode [--calls 1000] [--rounds 7]``. Both sides make the same
1,000 distinct chat calls through a genuine ``OpenAI`` client, one at a time:

- replay: the pytest plugin's machinery as a test session uses it: the recording file read
  (a fresh store, as in a new session), the transports patched, a strict-mode recording
  installed, the calls answered from it;
- memory: ``OpenAI(http_client=llmcache.http_client(tiers=["memory://"]))`` holding the same
  answers, so every call is a hit.

Rounds alternate the two sides; the figures are the medians of the rounds. Every round
checks that the upstream saw no request. No figure is asserted: the target (replay at most
1.5x memory) is reported beside the measurement.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from openai import OpenAI

import llmcache
from llmcache.testmode.session import Recording, install, uninstall
from llmcache.testmode.store import RecordingStore, open_recording
from llmcache.tools.simulator import Simulator

TARGET = 1.5
TEST = "tests/test_bench.py::test_replay"


def _params(i: int) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You answer questions about caches briefly."},
            {"role": "user", "content": f"Question {i}: what does a cache tier do?"},
        ],
    }


def _calls(client: OpenAI, count: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        client.chat.completions.create(**_params(i))
    return time.perf_counter() - started


def _record(sim: Simulator, path: Path, count: int) -> None:
    install(Recording(open_recording(path), "record", TEST))
    try:
        _calls(OpenAI(api_key="sk-bench", base_url=sim.base_url, max_retries=0), count)
    finally:
        uninstall()
    open_recording(path).flush()


def _replay(sim: Simulator, path: Path, count: int) -> tuple[float, float]:
    """Return (seconds to read the recording, seconds for the calls)."""
    started = time.perf_counter()
    store = RecordingStore(path)  # a new session reads the file afresh
    loaded = time.perf_counter() - started
    install(Recording(store, "strict", TEST))
    try:
        client = OpenAI(api_key="sk-bench", base_url=sim.base_url, max_retries=0)
        return loaded, _calls(client, count)
    finally:
        uninstall()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    with Simulator() as sim, tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "test_bench.jsonl"
        _record(sim, path, args.calls)
        http = llmcache.http_client(tiers=["memory://"], namespace="bench")
        memory = OpenAI(api_key="sk-bench", base_url=sim.base_url, http_client=http)
        _calls(memory, args.calls)  # fill the memory tier
        _calls(memory, 50)  # warm both paths before timing
        _replay(sim, path, 50)
        sent = sim.count()
        loads, replays, hits = [], [], []
        for _ in range(args.rounds):
            loaded, replayed = _replay(sim, path, args.calls)
            loads.append(loaded)
            replays.append(replayed)
            hits.append(_calls(memory, args.calls))
        assert sim.count() == sent, "a replayed or cached call reached the upstream"
        size = path.stat().st_size
    load, replay, hit = (statistics.median(v) for v in (loads, replays, hits))
    calls = args.calls
    print(f"{calls} calls, {args.rounds} rounds, recording of {size / 1024:.0f} KiB")
    print("| side | total ms | per call µs | ratio to memory |")
    print("|---|--:|--:|--:|")
    print(f"| memory tier hits | {hit * 1e3:.1f} | {hit / calls * 1e6:.0f} | 1.00 |")
    print(
        f"| replay, calls only | {replay * 1e3:.1f} | {replay / calls * 1e6:.0f} | "
        f"{replay / hit:.2f} |"
    )
    total = load + replay
    print(
        f"| replay, reading the recording included | {total * 1e3:.1f} | "
        f"{total / calls * 1e6:.0f} | {total / hit:.2f} |"
    )
    verdict = "met" if total / hit <= TARGET else "NOT met"
    print(f"\ntarget: replay at most {TARGET}x memory: {verdict} ({total / hit:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
