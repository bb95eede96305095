"""One fault run against a distributed tier, measured the same way by the tests and by
``benchmarks/distributed.py`` (which fills RELIABILITY.md's "distributed faults" table).

A run: a client (sync or asyncio) over one tier URL stores answers to ``questions``
questions, waits until the store has replicated them, then asks them round robin while a
thread inflicts the fault and watches for the store to be healthy again; it keeps asking
for ``after`` seconds past that. Every answer is checked against its own request (the
simulator starts each answer with a digest of the request), every log line of the
``llmcache`` and ``redis`` loggers is kept, so a test can look for the prompts in them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from openai import AsyncOpenAI, OpenAI

from llmcache import CachedClient
from llmcache.tools.simulator import Simulator, request_digest

__all__ = ["Call", "Figures", "LogCapture", "fault_run", "questions"]

MODEL = "gpt-4o-mini"
WATCH_EVERY = 0.05  # seconds between two health checks of the store
RUN_LIMIT = 60.0  # no run asks for longer than this, whatever happens


def questions(count: int, marker: str) -> list[dict[str, Any]]:
    """``create`` arguments of ``count`` questions, each carrying ``marker`` (to find in logs)."""
    return [
        {"model": MODEL, "messages": [{"role": "user", "content": f"{marker} question {i}"}]}
        for i in range(count)
    ]


class LogCapture(logging.Handler):
    """Keep every record of the ``llmcache`` and ``redis`` loggers while installed."""

    NAMES = ("llmcache", "redis", "pymemcache")

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append(f"{record.name} {record.levelname} {text}")

    def __enter__(self) -> LogCapture:
        for name in self.NAMES:
            logging.getLogger(name).addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for name in self.NAMES:
            logging.getLogger(name).removeHandler(self)


@dataclass
class Call:
    """One user call of a run."""

    at: float  # seconds since the fault began
    index: int
    hit: bool
    ok: bool  # answered, with its own request's answer


@dataclass
class Figures:
    """What a run measured; times in seconds from the start of the fault."""

    healthy_at: float
    calls: list[Call] = field(default_factory=list)
    upstream_during: int = 0
    failed_calls: int = 0
    wrong_answers: int = 0
    errors_counted: int = 0
    logs: list[str] = field(default_factory=list)
    affected: set[int] = field(default_factory=set)
    extra: dict[str, Any] = field(default_factory=dict)  # a scenario's own figures

    def _rate(self, calls: list[Call]) -> float:
        return sum(c.hit for c in calls) / len(calls) if calls else float("nan")

    @property
    def during(self) -> list[Call]:
        """Calls made between the start of the fault and the store being healthy."""
        return [c for c in self.calls if c.at < self.healthy_at]

    @property
    def after(self) -> list[Call]:
        """Calls made once the store was healthy again."""
        return [c for c in self.calls if c.at >= self.healthy_at]

    @property
    def hit_rate_during(self) -> float:
        """Hit rate of every call during the fault."""
        return self._rate(self.during)

    @property
    def hit_rate_during_unaffected(self) -> float | None:
        """Hit rate during the fault of the questions whose node did not fail (``None``
        when the run did not tell them apart: one primary holds every key)."""
        if not self.affected:
            return None
        return self._rate([c for c in self.during if c.index not in self.affected])

    @property
    def hit_rate_after(self) -> float:
        """Hit rate of every call once healthy."""
        return self._rate(self.after)

    @property
    def first_hit_after(self) -> float | None:
        """Seconds from healthy to the first hit, after the fault, on a question of the node
        that failed (0 when it came before the health check saw the store healthy, or if
        no hit was ever lost); ``None`` if hits never came back."""
        affected = self.affected or {c.index for c in self.calls}
        lost = next((c.at for c in self.calls if c.index in affected and not c.hit), None)
        if lost is None:
            return 0.0
        for call in self.calls:
            if call.at > lost and call.index in affected and call.hit:
                return max(0.0, call.at - self.healthy_at)
        return None

    def summary(self) -> dict[str, Any]:
        """The figures as plain values (for JSON and the table)."""
        return {
            "healthy_after_s": round(self.healthy_at, 3),
            "first_hit_after_healthy_s": None
            if self.first_hit_after is None
            else round(self.first_hit_after, 3),
            "hit_rate_during": round(self.hit_rate_during, 3),
            "hit_rate_during_unaffected": None
            if self.hit_rate_during_unaffected is None
            else round(self.hit_rate_during_unaffected, 3),
            "hit_rate_after": round(self.hit_rate_after, 3),
            "calls": len(self.calls),
            "upstream_during": self.upstream_during,
            "failed_calls": self.failed_calls,
            "wrong_answers": self.wrong_answers,
            "errors_counted": self.errors_counted,
            "log_lines": len(self.logs),
        }


def _answer_ok(params: dict[str, Any], response: Any) -> bool:
    content = response.choices[0].message.content or ""
    return content.startswith(f"[{request_digest(params)}]")


class _Watcher(threading.Thread):
    """Inflict the fault, then wait (bounded) for the store to be healthy."""

    def __init__(
        self, fault: Callable[[], None], healthy: Callable[[], bool], sim: Simulator
    ) -> None:
        super().__init__(daemon=True)
        self.fault, self.healthy, self.sim = fault, healthy, sim
        self.started = time.monotonic()
        self.healthy_at: float | None = None
        self.upstream_at_healthy = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.fault()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if self.healthy():
                    self.upstream_at_healthy = self.sim.count()
                    self.healthy_at = time.monotonic() - self.started
                    return
                time.sleep(WATCH_EVERY)
            raise TimeoutError("the store was not healthy 30 s after the fault")
        except BaseException as exc:
            self.error = exc


def fault_run(
    sim: Simulator,
    url: str,
    *,
    fault: Callable[[], None],
    healthy: Callable[[], bool],
    settle: Callable[[], None] = lambda: None,
    affected: Callable[[str], bool] | None = None,
    is_async: bool = False,
    count: int = 60,
    after: float = 3.0,
    marker: str | None = None,
    client_options: dict[str, Any] | None = None,
) -> Figures:
    """Run the workload around one fault and return its figures.

    :param fault: inflicts the fault (runs in a thread; may block until it is done).
    :param healthy: tells whether the store is healthy again.
    :param settle: waits until the warm entries are replicated.
    :param affected: tells, from a physical key, whether its node is the one that fails.
    :param marker: text in every prompt, looked for in the logs by the caller.
    """
    marker = marker or f"PROMPT-{uuid.uuid4().hex}"
    asked = questions(count, marker)
    options = {"tiers": [url], "namespace": "faults", **(client_options or {})}
    with LogCapture() as logs:
        if is_async:
            figures = asyncio.run(
                _run_async(sim, options, asked, fault, healthy, settle, affected, after)
            )
        else:
            figures = _run_sync(sim, options, asked, fault, healthy, settle, affected, after)
    figures.logs = logs.lines
    return figures


def _record(
    figures: Figures, watcher: _Watcher, index: int, params: dict[str, Any], result: Any
) -> None:
    at = time.monotonic() - watcher.started
    if isinstance(result, BaseException):
        figures.failed_calls += 1
        figures.calls.append(Call(at, index, False, False))
        return
    ok = _answer_ok(params, result)
    figures.wrong_answers += not ok
    figures.calls.append(Call(at, index, bool(result.cache_hit), ok))


def _done(watcher: _Watcher, after: float, began: float) -> bool:
    if time.monotonic() - began > RUN_LIMIT or watcher.error is not None:
        return True
    return watcher.healthy_at is not None and (
        time.monotonic() - watcher.started > watcher.healthy_at + after
    )


def _finish(figures: Figures, watcher: _Watcher, errors: int) -> Figures:
    watcher.join(timeout=35)
    if watcher.error is not None:
        raise watcher.error
    if watcher.healthy_at is None:
        raise TimeoutError("the run ended before the store was healthy")
    figures.healthy_at = watcher.healthy_at
    figures.errors_counted = errors
    return figures


def _warm_keys(responses: list[Any], affected: Callable[[str], bool] | None) -> set[int]:
    if affected is None:
        return set()
    return {i for i, r in enumerate(responses) if affected(f"llmcache:faults:{r.cache_key}")}


def _run_sync(
    sim: Simulator,
    options: dict[str, Any],
    asked: list[dict[str, Any]],
    fault: Callable[[], None],
    healthy: Callable[[], bool],
    settle: Callable[[], None],
    affected: Callable[[str], bool] | None,
    after: float,
) -> Figures:
    wrapped = OpenAI(base_url=sim.base_url, api_key="sk-x", max_retries=0)
    client = CachedClient(wrapped, **options)
    try:
        warm = [client.chat.completions.create(**params) for params in asked]
        settle()
        figures = Figures(healthy_at=0.0, affected=_warm_keys(warm, affected))
        upstream_before = sim.count()
        watcher = _Watcher(fault, healthy, sim)
        watcher.start()
        began = time.monotonic()
        i = 0
        while not _done(watcher, after, began):
            params = asked[i % len(asked)]
            try:
                result: Any = client.chat.completions.create(**params)
            except Exception as exc:
                result = exc
            _record(figures, watcher, i % len(asked), params, result)
            i += 1
        figures = _finish(figures, watcher, client.stats().errors)
        figures.upstream_during = watcher.upstream_at_healthy - upstream_before
        return figures
    finally:
        client.close()
        wrapped.close()


async def _run_async(
    sim: Simulator,
    options: dict[str, Any],
    asked: list[dict[str, Any]],
    fault: Callable[[], None],
    healthy: Callable[[], bool],
    settle: Callable[[], None],
    affected: Callable[[str], bool] | None,
    after: float,
) -> Figures:
    wrapped = AsyncOpenAI(base_url=sim.base_url, api_key="sk-x", max_retries=0)
    client = CachedClient(wrapped, **options)
    try:
        warm = [await client.chat.completions.create(**params) for params in asked]
        await asyncio.to_thread(settle)
        figures = Figures(healthy_at=0.0, affected=_warm_keys(warm, affected))
        upstream_before = sim.count()
        watcher = _Watcher(fault, healthy, sim)
        watcher.start()
        began = time.monotonic()
        i = 0
        while not _done(watcher, after, began):
            params = asked[i % len(asked)]
            try:
                result: Any = await client.chat.completions.create(**params)
            except Exception as exc:
                result = exc
            _record(figures, watcher, i % len(asked), params, result)
            i += 1
            if i % 50 == 0:
                await asyncio.sleep(0)  # let the client's own tasks run
        figures = _finish(figures, watcher, client.stats().errors)
        figures.upstream_during = watcher.upstream_at_healthy - upstream_before
        return figures
    finally:
        await client.close()
        await wrapped.close()  # its connections belong to this loop, which ends here
