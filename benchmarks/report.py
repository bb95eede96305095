"""Write ``RESULTS.md``: the machine, the settings, every figure and every target's verdict."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from . import batching, http_hits, misses
from .batching import BatchRow, CoalesceRow
from .bounds import BoundRow
from .hits import HitRow
from .http_hits import HttpRow
from .machine import Machine
from .misses import MissRow
from .peers import PeerRow
from .scale import ScaleRow
from .sizes import THRESHOLD, SizeRow

__all__ = ["Results", "Verdict", "hit_table", "render", "verdicts"]


@dataclass
class Results:
    """Everything one run measured."""

    machine: Machine
    settings: dict[str, Any]
    hits: list[HitRow] = field(default_factory=list)
    bounds: list[BoundRow] = field(default_factory=list)
    http_hits: list[HttpRow] = field(default_factory=list)
    misses: list[MissRow] = field(default_factory=list)
    batches: list[BatchRow] = field(default_factory=list)
    bursts: list[CoalesceRow] = field(default_factory=list)
    scale: list[ScaleRow] = field(default_factory=list)
    sizes: list[SizeRow] = field(default_factory=list)
    peers: list[PeerRow] = field(default_factory=list)
    response_bytes: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Verdict:
    """One target and whether this run met it."""

    what: str
    target: str
    measured: str
    passed: bool


def _mark(passed: bool | None) -> str:
    return "" if passed is None else ("PASS" if passed else "MISS")


def verdicts(results: Results) -> list[Verdict]:
    """Return every target of the run with its figure."""
    found = []
    for row in results.hits:
        if row.target is not None:
            found.append(
                Verdict(
                    f"hit {row.tier} ({row.mode})",
                    f"<= {row.target:.2f}x physical floor, 0 upstream calls",
                    f"{row.result.ratio:.3f}x, {row.upstream_calls} calls",
                    bool(row.passed),
                )
            )
    for http in results.http_hits:
        found.append(
            Verdict(
                f"hit through llmcache.http_client ({http.mode})",
                f"<= {http_hits.TARGET:.2f}x floor, 0 upstream calls",
                f"{http.result.ratio:.3f}x, {http.upstream_calls} calls",
                http.passed,
            )
        )
    for miss in results.misses:
        found.append(
            Verdict(
                f"miss overhead ({miss.mode})",
                f"<= {misses.TARGET:.2f}x plain SDK call",
                f"{miss.result.ratio:.3f}x",
                miss.passed,
            )
        )
    for batch in results.batches:
        if batch.plain:
            continue
        found.append(
            Verdict(
                f"batch of {batch.requests:,}, 50% duplicates ({batch.mode})",
                f"{batch.unique} upstream calls, <= {batching.TARGET:.1f}x ideal",
                f"{batch.upstream_calls} calls, {batch.ratio:.3f}x",
                batch.passed,
            )
        )
    for burst in results.bursts:
        found.append(
            Verdict(
                f"{burst.callers} identical concurrent requests ({burst.mode})",
                "1 upstream call",
                f"{burst.upstream_calls} call(s)",
                burst.passed,
            )
        )
    for row in results.scale:
        if row.target is not None:
            found.append(
                Verdict(
                    f"{row.backend} hit at {row.fill.entries:,} vs {1000:,} entries",
                    f"<= {row.target:.1f}x",
                    f"{row.hit_ratio:.3f}x",
                    row.hit_ratio <= row.target and row.upstream_calls == 0,
                )
            )
        if row.get_many is not None:
            keys, mgets, total = row.get_many
            found.append(
                Verdict(
                    f"{row.backend} get_many of {keys} keys",
                    "one round trip (1 command)",
                    f"{mgets} MGET, {total} command(s)",
                    mgets == 1 and total == 1,
                )
            )
    return found


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _us(value: float) -> str:
    return f"{value:,.1f}"


def _header(results: Results) -> list[str]:
    machine = results.machine
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# llmcache benchmark results",
        "",
        f"Produced by `python -m benchmarks` on {when} in {results.seconds:.0f} s. "
        "See [README.md](README.md) for what each figure means and how to reproduce it.",
        "",
        "## Machine, versions, settings",
        "",
        f"- CPU: {machine.cpu}, {machine.cores} cores; {machine.memory_gb:.1f} GiB RAM; "
        f"{machine.system}",
        f"- Pinning: {machine.placement}",
        "- Load average (1, 5, 15 min): "
        + "; ".join(f"{when_}: {load}" for when_, load in machine.load),
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in machine.versions.items()),
        "- Settings: " + ", ".join(f"{k}={v}" for k, v in results.settings.items()),
        f"- Typical request: 3 messages (600-character system prompt); response "
        f"{results.response_bytes:,} bytes of JSON",
    ]
    return lines + [f"- {note}" for note in results.notes]


def _summary(results: Results) -> list[str]:
    rows = [[v.what, v.target, v.measured, f"**{_mark(v.passed)}**"] for v in verdicts(results)]
    return ["", "## Targets", "", *_table(["what", "target", "measured", "result"], rows)]


def hit_table(hits: list[HitRow]) -> list[str]:
    """Return the Markdown table of hit rows (section 1), with its floors' legend."""
    head = [
        "tier",
        "mode",
        "served by",
        "ours median µs",
        "ours p99 µs",
        "hits/s",
        "floor median µs",
        "floor p99 µs",
        "ratio",
        "target",
        "envelope floor µs",
        "ratio (envelope)",
        "upstream calls",
        "calls/block",
        "",
    ]
    rows = []
    for row in hits:
        r = row.result
        rows.append(
            [
                row.tier,
                row.mode,
                row.label,
                _us(r.ours.median_us),
                _us(r.ours.p99_us),
                f"{r.ours.per_second:,.0f}",
                _us(r.floor.median_us),
                _us(r.floor.p99_us),
                f"**{r.ratio:.3f}**",
                "" if row.target is None else f"{row.target:.2f}",
                "" if r.second is None else _us(r.second.median_us),
                "" if r.second_ratio is None else f"{r.second_ratio:.3f}",
                str(row.upstream_calls),
                str(r.block),
                _mark(row.passed),
            ]
        )
    floors = sorted({(row.tier, row.floor) for row in hits})
    return [
        *_table(head, rows),
        "",
        "Floors: " + "; ".join(f"{tier}: {floor}" for tier, floor in floors) + ".",
    ]


def _hits(results: Results) -> list[str]:
    return [
        "",
        "## 1. Hit latency per tier",
        "",
        "`client.chat.completions.create` of the typical request, served from the cache, "
        "against the physical floor (the request's canonical JSON with orjson, sorted keys, "
        "+ BLAKE2b + the store's raw read of the response's JSON stored under that key + "
        "`ChatCompletion.model_validate_json`), and against the envelope floor (llmcache's "
        "own key digest + the raw read of the very bytes the tier holds + msgpack unpack + "
        "validation). Ratio: the median over rounds of (our block median / the floor's "
        "block median), the three sides' blocks rotating. Targets hold the physical ratio.",
        "",
        *hit_table(results.hits),
    ]


def _bounds(results: Results) -> list[str]:
    head = ["store", "hit", "median µs", "floor median µs", "ratio"]
    rows = []
    for row in results.bounds:
        r = row.result
        ratio = f"**{r.ratio:.3f}**"
        rows.append([row.store, row.name, _us(r.ours.median_us), _us(r.floor.median_us), ratio])
    return [
        "",
        "### The least a Python hit adds",
        "",
        "Bare bounds of a hit, each one flat function with no structure "
        "(`benchmarks/bounds.py`), and llmcache's own hit on the same store, each against "
        "the physical floor in alternating blocks. *bare*: the deny-list check, the versioned "
        "key tuple dumped and hashed, the read (memory: an LRU lookup; SQLite: the one-key "
        "`SELECT` of llmcache's table and the entry unpacked), the expiry check, validation, "
        "one statistics record and the `cache_*` attributes. *bare + NaN check*: the same "
        "with the walk that tells a NaN argument from `null`, which llmcache's hits skip "
        "when the entry's request held no `null`. A target below a store's *bare* ratio "
        "asks for less interpreted work than a hit's guarantees need.",
        "",
        *_table(head, rows),
    ]


def _misses(results: Results) -> list[str]:
    head = ["mode", "cached miss median µs", "plain SDK median µs", "ratio", "target", ""]
    rows = [
        [
            m.mode,
            _us(m.result.ours.median_us),
            _us(m.result.floor.median_us),
            f"**{m.result.ratio:.3f}**",
            f"{misses.TARGET:.2f}",
            _mark(m.passed),
        ]
        for m in results.misses
    ]
    checks = "; ".join(
        f"{m.mode}: {m.upstream_calls} upstream requests for {m.calls} calls"
        for m in results.misses
    )
    return [
        "",
        "## 2. Miss overhead",
        "",
        "A cached client's miss (memory tier, a request never sent before each time) against "
        "the plain SDK call, both to the simulator at zero delay.",
        "",
        *_table(head, rows),
        "",
        f"Every call reached the upstream exactly once ({checks}).",
    ]


def _http(results: Results) -> list[str]:
    wrapper = {r.mode: r.result.ours.median_us for r in results.hits if r.tier == "memory"}
    plain = {m.mode: m.result.floor.median_us for m in results.misses}
    head = ["mode", "ours median µs", "ours p99 µs", "floor median µs", "ratio", "target"]
    head += ["upstream calls", "wrapper hit µs", "plain SDK miss µs", ""]
    rows = [
        [
            h.mode,
            _us(h.result.ours.median_us),
            _us(h.result.ours.p99_us),
            _us(h.result.floor.median_us),
            f"**{h.result.ratio:.3f}**",
            f"{http_hits.TARGET:.2f}",
            str(h.upstream_calls),
            _us(wrapper[h.mode]) if h.mode in wrapper else "",
            _us(plain[h.mode]) if h.mode in plain else "",
            _mark(h.passed),
        ]
        for h in results.http_hits
    ]
    return [
        "",
        "## 2b. Hits through the HTTP-level cache",
        "",
        "`OpenAI(http_client=llmcache.http_client(tiers=['memory://']))`, the typical request, "
        "against the floor: the same SDK call through an HTTP client whose transport returns "
        "the stored answer's bytes at once (no cache logic). Beside it, the wrapper's memory "
        "hit and the plain SDK call to the simulator (a miss) of this run.",
        "",
        *_table(head, rows),
    ]


def _batches(results: Results) -> list[str]:
    head = ["mode", "requests", "unique", "upstream calls", "wall s", "ideal s", "ratio", ""]
    rows = [
        [
            b.mode,
            f"{b.requests:,}",
            str(b.unique),
            str(b.upstream_calls),
            f"{b.wall_s:.3f}",
            f"{b.ideal_s:.3f}",
            f"**{b.ratio:.3f}**",
            "" if b.plain else _mark(b.passed),
        ]
        for b in results.batches
    ]
    plain = [b for b in results.batches if b.plain]
    burst_rows = [
        [
            b.mode,
            str(b.callers),
            str(b.upstream_calls),
            f"{b.wall_s * 1000:.1f}",
            str(b.coalesced),
            _mark(b.passed),
        ]
        for b in results.bursts
    ]
    lines = [
        "",
        "## 3. Batch and coalescing",
        "",
        f"`client.batch_completions` of {batching.BATCH:,} requests ({batching.UNIQUE} distinct, "
        f"each twice, shuffled), `max_concurrency={batching.CONCURRENCY}`, against the "
        f"simulator answering in {batching.DELAY * 1000:.0f} ms. Ideal: unique misses / "
        f"{batching.CONCURRENCY} x {batching.DELAY * 1000:.0f} ms. Each row is the best of "
        f"{batching.REPEATS} runs, ours and the bare SDK's alternating (every run's upstream "
        "count and answer order are checked).",
        "",
        *_table(head, rows),
    ]
    if plain:
        lines += [
            "",
            "The `plain` rows send the 500 distinct requests with the bare SDK at the same "
            "concurrency (a thread pool; an asyncio semaphore): the environment's own floor.",
        ]
    return [
        *lines,
        "",
        f"{batching.PARALLEL} identical requests at once, the simulator answering in "
        f"{batching.DELAY * 1000:.0f} ms:",
        "",
        *_table(["mode", "callers", "upstream calls", "wall ms", "coalesced", ""], burst_rows),
    ]


def _scale(results: Results) -> list[str]:
    head = [
        "backend",
        "entries",
        "fill s",
        "entries/s",
        "stored bytes/entry",
        "measured by",
        "hit µs at 1k",
        "hit µs at N",
        "ratio",
        "upstream calls",
    ]
    rows = []
    for s in results.scale:
        stored = "" if s.stored_bytes_per_entry is None else f"{s.stored_bytes_per_entry:,.0f}"
        mark = f" {_mark(s.hit_ratio <= s.target)}" if s.target is not None else ""
        rows.append(
            [
                s.backend,
                f"{s.fill.entries:,}",
                f"{s.fill.seconds:.1f}",
                f"{s.fill.rate:,.0f}",
                stored,
                s.storage_measure,
                _us(s.hit_small_us),
                _us(s.hit_big_us),
                f"**{s.hit_ratio:.3f}**{mark}",
                str(s.upstream_calls),
            ]
        )
    clear_rows = []
    for s in results.scale:
        for clear in s.clears:
            removed = "n/a (cannot count)" if s.backend == "memcached" else f"{clear.removed:,}"
            clear_rows.append([s.backend, clear.what, removed, f"{clear.seconds:.3f}"])
    lines = [
        "",
        "## 4. Scale",
        "",
        "Each backend's big store filled through `set_many` (batches of 5,000) beside a small "
        "store of 1,000 entries; hits of the typical request in the big store against the "
        "small one, blocks alternating (ratio: big / small). Every entry is a real encoded "
        f"entry of {results.scale[0].entry_bytes if results.scale else 0:,} bytes.",
        "",
        *_table(head, rows),
        "",
        "Clears on the big store, through `client.clear_cache` (the whole-namespace clear "
        "runs after the two partial clears' entries were written back, so it removes every "
        "entry of the fill, and the typical request's):",
        "",
        *_table(["backend", "clear", "removed", "seconds"], clear_rows),
    ]
    for s in results.scale:
        if s.purge is not None:
            removed, seconds, calls = s.purge
            lines.append(
                f"\n- {s.backend} purge: {removed:,} expired rows among the live ones deleted "
                f"in {seconds:.3f} s ({calls} `purge()` calls of at most `purge_batch` rows; "
                f"{removed / seconds if seconds else 0:,.0f} rows/s)."
            )
        if s.get_many is not None:
            keys, mgets, total = s.get_many
            lines.append(
                f"\n- {s.backend} `get_many` of {keys} keys: {mgets} `MGET`, {total} command(s) "
                "in all (`INFO commandstats` before and after): one round trip."
            )
        if not s.cleared_check:
            lines.append(f"\n- {s.backend}: entries were still readable after the clear!")
        for error in s.errors:
            lines.append(f"\n- {s.backend}: {error}")
        if s.note:
            lines.append(f"\n- {s.backend}: {s.note}.")
    return lines


def _sizes(results: Results) -> list[str]:
    head = [
        "response",
        "JSON",
        "SDK model_dump_json",
        "JSON + zlib",
        "payload msgpack",
        "entry (default)",
        "entry compressed",
    ]
    rows = [
        [
            s.response,
            f"{s.json:,}",
            f"{s.sdk_json:,}",
            f"{s.json_zlib:,}",
            f"{s.msgpack:,}",
            f"{s.entry:,}",
            f"{s.entry_compressed:,}",
        ]
        for s in results.sizes
    ]
    return [
        "",
        "### Entry size",
        "",
        f"Bytes. The codec compresses entries whose msgpack body exceeds {THRESHOLD:,} bytes "
        "(`compress_threshold`); 'entry compressed' forces it.",
        "",
        *_table(head, rows),
    ]


def _peers(results: Results) -> list[str]:
    head = [
        "peer",
        "version",
        "our tier",
        "peer median µs",
        "peer p99 µs",
        "ours median µs",
        "peer / ours",
        "what is timed",
    ]
    rows = []
    for p in results.peers:
        if p.result is None:
            rows.append([p.peer, p.version, p.tier, "", "", "", "unavailable", p.error[:80]])
            continue
        r = p.result
        rows.append(
            [
                p.peer,
                p.version,
                p.tier,
                _us(r.ours.median_us),
                _us(r.ours.p99_us),
                _us(r.floor.median_us),
                f"**{r.ratio:.2f}**",
                p.timed,
            ]
        )
    return [
        "",
        "## 5. Peers",
        "",
        "The same cached response read through each peer's hit path, in alternating blocks "
        "with our full `create` hit on the matching tier. Above 1: the peer is slower. "
        "See README.md for exactly what is timed.",
        "",
        *_table(head, rows),
    ]


def render(results: Results) -> str:
    """Return the Markdown of ``RESULTS.md``."""
    lines = _header(results) + _summary(results) + _hits(results)
    if results.bounds:
        lines += _bounds(results)
    if results.misses:
        lines += _misses(results)
    if results.http_hits:
        lines += _http(results)
    if results.batches or results.bursts:
        lines += _batches(results)
    if results.scale:
        lines += _scale(results)
    if results.sizes:
        lines += _sizes(results)
    if results.peers:
        lines += _peers(results)
    lines += ["", "## Chart", "", "![hit latency per tier and peer](hit_latency.png)", ""]
    return "\n".join(lines)
