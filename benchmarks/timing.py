"""Paired, interleaved timing: ours against a floor, in alternating blocks, medians of ratios.

Each round times one block of calls of each side, one call at a time, the order of the
sides changing from round to round. A round's ratio is the median of our block over the
median of the floor's block, taken seconds apart on the same machine state; the reported
ratio is the median of the rounds' ratios, so that a burst of machine noise spoils a round
or two, not the figure. A second floor, when given, is timed in the same rounds (the three
sides rotating), and its ratio is reported beside the first.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MAX_BLOCK", "Paired", "Samples", "paired", "paired_async", "percentile"]

MAX_BLOCK = 3000


def percentile(values: list[float], fraction: float) -> float:
    """Return the ``fraction`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


@dataclass
class Samples:
    """Per-call latencies of one side, in nanoseconds, block by block."""

    blocks: list[list[int]] = field(default_factory=list)

    @property
    def all(self) -> list[float]:
        """Every sample."""
        return [float(v) for block in self.blocks for v in block]

    @property
    def median_us(self) -> float:
        """The median of the per-block medians, in microseconds."""
        return statistics.median(statistics.median(b) for b in self.blocks) / 1000

    @property
    def p99_us(self) -> float:
        """The 99th percentile of all samples, in microseconds."""
        return percentile(self.all, 0.99) / 1000

    @property
    def per_second(self) -> float:
        """Calls per second at the median block's mean latency."""
        means = [sum(b) / len(b) for b in self.blocks]
        return 1e9 / statistics.median(means)


@dataclass
class Paired:
    """Ours and the floor, measured in alternating blocks."""

    ours: Samples
    floor: Samples
    ratios: list[float]
    block: int = 0
    second: Samples | None = None
    second_ratios: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """The median of the rounds' ratios (our median over the floor's median)."""
        return statistics.median(self.ratios)

    @property
    def second_ratio(self) -> float | None:
        """The same against the second floor, when one was timed."""
        return statistics.median(self.second_ratios) if self.second_ratios else None

    def close_round(self) -> None:
        """Record the ratios of the round whose blocks were just appended."""
        ours = statistics.median(self.ours.blocks[-1])
        self.ratios.append(ours / statistics.median(self.floor.blocks[-1]))
        if self.second is not None:
            self.second_ratios.append(ours / statistics.median(self.second.blocks[-1]))


def _order(sides: list[tuple[Any, Samples]], n: int) -> list[tuple[Any, Samples]]:
    """Round ``n``'s order: rotated by one each round, reversed every other round."""
    shift = n % len(sides)
    turned = sides[shift:] + sides[:shift]
    return turned if n % 2 == 0 else turned[::-1]


def _block(call: Callable[[], Any], size: int) -> list[int]:
    clock = time.perf_counter_ns
    samples = []
    for _ in range(size):
        start = clock()
        call()
        samples.append(clock() - start)
    return samples


def _size(block: int, block_seconds: float | None, warm: list[int]) -> int:
    """Return the block size: at least ``block``, more to fill ``block_seconds`` of ours."""
    if block_seconds is None or not warm:
        return block
    per_call = statistics.median(warm)
    return max(block, min(MAX_BLOCK, int(block_seconds * 1e9 / max(per_call, 1))))


def paired(
    ours: Callable[[], Any],
    floor: Callable[[], Any],
    *,
    rounds: int,
    block: int,
    warmup: int = 200,
    block_seconds: float | None = None,
    second: Callable[[], Any] | None = None,
) -> Paired:
    """Time ``ours`` and ``floor`` in ``rounds`` alternating blocks of ``block`` calls.

    :param block_seconds: make blocks longer than ``block`` calls when ours is fast, so that
        each block of ours lasts about this long (at most :data:`MAX_BLOCK` calls).
    :param second: a second floor, timed in the same rounds.
    """
    block = _size(block, block_seconds, _block(ours, warmup))
    _block(floor, warmup)
    result = Paired(Samples(), Samples(), [], block)
    sides: list[tuple[Any, Samples]] = [(ours, result.ours), (floor, result.floor)]
    if second is not None:
        _block(second, warmup)
        result.second = Samples()
        sides.append((second, result.second))
    gc.collect()
    for n in range(rounds):
        for call, samples in _order(sides, n):
            samples.blocks.append(_block(call, block))
        result.close_round()
    return result


async def _ablock(call: Callable[[], Awaitable[Any]], size: int) -> list[int]:
    clock = time.perf_counter_ns
    samples = []
    for _ in range(size):
        start = clock()
        await call()
        samples.append(clock() - start)
    return samples


async def paired_async(
    ours: Callable[[], Awaitable[Any]],
    floor: Callable[[], Awaitable[Any]],
    *,
    rounds: int,
    block: int,
    warmup: int = 200,
    block_seconds: float | None = None,
    second: Callable[[], Awaitable[Any]] | None = None,
) -> Paired:
    """The asyncio twin of :func:`paired`: each call is awaited before the next starts."""
    block = _size(block, block_seconds, await _ablock(ours, warmup))
    await _ablock(floor, warmup)
    result = Paired(Samples(), Samples(), [], block)
    sides: list[tuple[Any, Samples]] = [(ours, result.ours), (floor, result.floor)]
    if second is not None:
        await _ablock(second, warmup)
        result.second = Samples()
        sides.append((second, result.second))
    gc.collect()
    for n in range(rounds):
        for call, samples in _order(sides, n):
            samples.blocks.append(await _ablock(call, block))
        result.close_round()
    return result
