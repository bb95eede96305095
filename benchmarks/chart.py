"""Draw ``hit_latency.png``: median hit latency per tier (ours beside its floor) and per peer."""

from __future__ import annotations

from pathlib import Path

from .hits import HitRow
from .peers import PeerRow

__all__ = ["draw"]


def draw(hits: list[HitRow], peers: list[PeerRow], path: Path) -> bool:
    """Write the chart; return ``False`` when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    sync = [row for row in hits if row.mode == "sync"]
    measured = [peer for peer in peers if peer.result is not None]
    figure, (left, right) = plt.subplots(
        1,
        2,
        figsize=(14, 6),
        gridspec_kw={"width_ratios": [1.25, 1]},
        constrained_layout=True,
    )
    names = [row.tier for row in sync]
    places = list(range(len(names)))
    ours = [row.result.ours.median_us for row in sync]
    floors = [row.result.floor.median_us for row in sync]
    left.barh([p + 0.2 for p in places], ours, height=0.4, label="llmcache hit", color="#2b6cb0")
    left.barh([p - 0.2 for p in places], floors, height=0.4, label="floor", color="#a0aec0")
    for place, row in zip(places, sync, strict=True):
        left.text(
            row.result.ours.median_us,
            place + 0.2,
            f" {row.result.ours.median_us:.0f} µs ({row.result.ratio:.2f}x)",
            va="center",
            fontsize=8,
        )
    left.set_yticks(places, names)
    left.invert_yaxis()
    left.set_xlabel("median latency of one hit, µs (sync client; log scale)")
    left.set_title("llmcache hit vs floor, per tier")
    left.legend(loc="lower right")
    left.set_xscale("log")
    left.set_xlim(min(ours + floors) / 1.5, max(ours + floors) * 6)
    if measured:
        labels = [f"{p.peer} {p.version}" for p in measured]
        labels += [f"llmcache {tier}" for tier in dict.fromkeys(p.tier for p in measured)]
        values = [p.result.ours.median_us for p in measured if p.result is not None]
        ours_by_tier: dict[str, float] = {}
        for p in measured:
            assert p.result is not None
            ours_by_tier.setdefault(p.tier, p.result.floor.median_us)
        values += list(ours_by_tier.values())
        colours = ["#dd6b20"] * len(measured) + ["#2b6cb0"] * len(ours_by_tier)
        right.barh(range(len(labels)), values, color=colours)
        for place, value in enumerate(values):
            right.text(value, place, f" {value:.0f} µs", va="center", fontsize=8)
        right.set_yticks(range(len(labels)), labels, fontsize=8)
        right.invert_yaxis()
        right.set_xscale("log")
        right.set_xlim(min(values) / 1.5, max(values) * 4)
        right.set_xlabel("median latency of one hit, µs (log scale)")
        right.set_title("peers' hit paths vs llmcache")
    else:
        right.axis("off")
        right.text(0.5, 0.5, "no peer installed", ha="center", va="center")
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
