"""The ``llmcache`` command line."""

from __future__ import annotations

import click

from . import __version__

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="llmcache")
def main() -> None:
    """llmcache: a caching layer for LLM API clients."""


@main.command()
@click.option(
    "--tier", metavar="URL", help="Cache tier URL (default: a SQLite file in ~/.cache/llmcache)."
)
@click.option(
    "--rounds",
    default=3,
    show_default=True,
    type=click.IntRange(1, 100),
    help="Times each question is asked.",
)
@click.option(
    "--delay",
    default=0.25,
    show_default=True,
    type=click.FloatRange(0, 10),
    help="Seconds the built-in simulator takes to answer.",
)
def demo(tier: str | None, rounds: int, delay: float) -> None:
    """Run a small workload through a cached client and show what the cache saved.

    The workload goes to OPENAI_BASE_URL when it is set (with OPENAI_API_KEY), else to a
    built-in OpenAI-compatible simulator on 127.0.0.1.
    """
    from .demo import run_demo

    click.echo(
        "llmcache demo: each question is asked several times; "
        "the first round shows where the answers came from."
    )
    report = run_demo(tier=tier, rounds=rounds, delay=delay, echo=click.echo)
    click.echo("")
    width = max(len(label) for label, _ in report.rows())
    for label, value in report.rows():
        click.echo(f"  {label:<{width}}  {value}")
    if report.misses == 0:
        click.echo("\nEvery answer came from the cache: this tier kept them from an earlier run.")
