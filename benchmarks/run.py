"""Run every benchmark and write ``RESULTS.md`` and ``hit_latency.png``: ``python -m benchmarks``.

Options: ``--quick`` (a smoke run: short blocks, 20,000 entries at scale), ``--entries N``
(entries per backend at scale), ``--fill-budget S`` (most seconds of writing per backend at
scale), ``--minutes M`` (the whole run's budget, default 9.5: the scale section shrinks its
writes to fit), ``--skip-scale``, ``--skip-peers``, ``--out DIR`` (where the results go;
default: this directory).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import orjson

from . import batching, bounds, frameworks, hits, http_hits, misses, peers, scale
from .chart import draw
from .machine import describe, load_average
from .pinning import place
from .report import Results, render, verdicts
from .servers import Servers
from .sizes import measure_sizes
from .timing import MAX_BLOCK
from .upstream import Upstream
from .workload import chat_request, openai_client

__all__ = ["main"]

HERE = Path(__file__).resolve().parent


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--entries", type=int, default=None, help="entries per backend at scale")
    parser.add_argument("--fill-budget", type=float, default=None, help="seconds per fill")
    parser.add_argument(
        "--minutes", type=float, default=9.5, help="the run's time budget (scale adapts to it)"
    )
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE)
    return parser.parse_args(argv)


@dataclasses.dataclass(frozen=True)
class Plan:
    """The settings of every section."""

    hits: hits.Settings
    misses: misses.Settings
    scale: scale.Settings
    peers: peers.Settings
    http_hits: http_hits.Settings = dataclasses.field(default_factory=http_hits.Settings)


def _plan(args: argparse.Namespace) -> Plan:
    if args.quick:
        plan = Plan(
            hits.Settings(rounds=5, block=100, async_rounds=3, async_block=100),
            misses.Settings(rounds=5, block=20, warmup=10),
            scale.Settings(entries=20_000, rounds=5, block=100, purge_rows=2_000),
            peers.Settings(rounds=3, block=100),
            http_hits.Settings(rounds=5, block=50),
        )
    else:
        plan = Plan(hits.Settings(), misses.Settings(), scale.Settings(), peers.Settings())
    changes = {}
    if args.entries is not None:
        changes["entries"] = args.entries
    if args.fill_budget is not None:
        changes["fill_budget"] = args.fill_budget
    return dataclasses.replace(plan, scale=dataclasses.replace(plan.scale, **changes))


def _settings(plan: Plan) -> dict[str, object]:
    return {
        "hit rounds": f"{plan.hits.rounds} (async {plan.hits.async_rounds}), blocks of at least "
        f"{plan.hits.block} calls, longer to last ~{plan.hits.block_seconds * 1000:.0f} ms "
        f"(at most {MAX_BLOCK})",
        "miss rounds x block": f"{plan.misses.rounds}x{plan.misses.block}",
        "scale entries": f"{plan.scale.entries:,} (writes: at most {plan.scale.fill_budget:.0f} s "
        "per backend, less when the run's time budget asks)",
        "scale hit rounds": f"{plan.scale.rounds}, blocks of at least {plan.scale.block} calls",
        "peer rounds": f"{plan.peers.rounds}, blocks of at least {plan.peers.block} calls",
        "batch": f"{batching.BATCH} requests, {batching.UNIQUE} unique, "
        f"max_concurrency={batching.CONCURRENCY}, upstream delay {batching.DELAY * 1000:.0f} ms",
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; return 0 (a missed target is reported, not an error)."""
    args = _parse(argv)
    began = time.perf_counter()
    placement = place()  # pins this process: before any thread starts
    server_cpu = placement.server_cpu

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - began:6.1f} s] {message}", flush=True)

    plan = _plan(args)
    machine = describe(placement.describe())
    machine.load.append(("start", load_average()))
    results = Results(machine, _settings(plan))
    log(f"pinning: {machine.placement}")
    log(
        f"{machine.cpu}, {machine.cores} cores; "
        + ", ".join(f"{k} {v}" for k, v in machine.versions.items())
    )
    with Servers(server_cpu) as servers, Upstream(server_cpu) as upstream:
        sync_openai = openai_client(upstream.base_url)
        response = sync_openai.chat.completions.create(**chat_request())
        results.response_bytes = len(orjson.dumps(response.to_dict()))
        results.sizes = measure_sizes(response)
        sync_openai.close()
        log("hit latency per tier")
        results.hits = hits.measure_hits(hits.tier_cases(servers), upstream, plan.hits, log)
        log("the least a Python hit adds")
        results.bounds = bounds.measure_bounds(upstream, plan.hits, log, servers.workdir)
        log("miss overhead")
        results.misses = misses.measure_misses(upstream, plan.misses, log)
        log("hits through the HTTP-level cache")
        results.http_hits = http_hits.measure_http_hits(upstream, plan.http_hits, log)
        log("batch and coalescing")
        # A batch measures throughput, not round trips: its upstream gets a core of its own,
        # as a real provider's servers would, so that the client's work is what is timed.
        with Upstream(placement.spare_cpu) as batch_upstream:
            results.batches = batching.measure_batches(batch_upstream, log)
        results.bursts = batching.measure_coalescing(upstream, log)
        if not args.skip_peers:
            log("peers")
            redis = servers.redis()
            results.peers = peers.measure_peers(
                upstream, redis.url, redis.port, servers.workdir, plan.peers, log
            )
            servers.stop(redis)
        if not args.skip_scale:
            log("scale")
            deadline = time.monotonic() + max(
                60.0, args.minutes * 60 - 30 - (time.perf_counter() - began)
            )
            results.scale = scale.measure_scale(servers, upstream, plan.scale, log, deadline)
    machine.load.append(("end", load_average()))
    results.seconds = time.perf_counter() - began
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "RESULTS.md").write_text(render(results))
    measured = Path(frameworks.__file__).with_name("frameworks.json")
    if measured.exists():  # the framework rows come from their own sessions: keep them
        frameworks.write(json.loads(measured.read_text()), args.out / "RESULTS.md")
    drawn = draw(results.hits, results.peers, args.out / "hit_latency.png")
    log(
        f"wrote {args.out / 'RESULTS.md'}"
        + ("" if drawn else " (no chart: pip install matplotlib)")
    )
    for verdict in verdicts(results):
        print(
            f"  {'PASS' if verdict.passed else 'MISS'}  {verdict.what}: {verdict.measured} "
            f"(target {verdict.target})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
