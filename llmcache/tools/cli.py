"""The ``llmcache`` command line."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, BinaryIO

import click

from llmcache import __version__
from llmcache.backends.urls import redact
from llmcache.errors import ConfigError
from llmcache.semantic.cli import calibrate_command
from llmcache.testmode.explain import SCAN_LIMIT
from llmcache.tools.serve_cli import serve

if TYPE_CHECKING:
    from llmcache._tiers.tier import Tier

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="llmcache")
def main() -> None:
    """llmcache: a caching layer for LLM API clients."""


main.add_command(serve)
main.add_command(calibrate_command)


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
    from llmcache.tools.demo import run_demo

    click.echo(
        "llmcache demo: each question is asked several times; "
        "the first round shows where the answers came from."
    )
    try:
        report = run_demo(tier=tier, rounds=rounds, delay=delay, echo=click.echo)
    except ConfigError as exc:  # a tier whose extra is missing, a malformed URL
        raise click.ClickException(str(exc)) from exc
    click.echo("")
    width = max(len(label) for label, _ in report.rows())
    for label, value in report.rows():
        click.echo(f"  {label:<{width}}  {value}")
    if report.misses == 0:
        click.echo("\nEvery answer came from the cache: this tier kept them from an earlier run.")


# -- stores --------------------------------------------------------------------------------

_NAMESPACE = re.compile(r"[A-Za-z0-9_.\-]+")
_TIMEOUT = click.option(
    "--timeout",
    default=5.0,
    show_default=True,
    metavar="S",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds each store operation may take.",
)


def _namespace(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not _NAMESPACE.fullmatch(value):
        raise click.BadParameter(
            f"{value!r} is not a namespace: use letters, digits, '_', '.' or '-' only"
        )
    return value


def _open(url: str, timeout: float) -> Tier:
    from llmcache.tools.inventory import open_store

    try:
        return open_store(url, timeout=timeout)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@contextmanager
def _store_errors(url: str) -> Iterator[None]:
    """Turn a store that fails into a one-line error (its password redacted)."""
    try:
        yield
    except (click.ClickException, click.exceptions.Abort):
        raise
    except Exception as exc:
        detail = redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        raise click.ClickException(f"the store at {redact(url)} failed: {detail}") from exc


@main.command()
@click.argument("url")
@click.option(
    "--namespace",
    "-n",
    metavar="NS",
    callback=_namespace,
    help="Only this namespace (default: every namespace).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
@_TIMEOUT
def stats(url: str, namespace: str | None, as_json: bool, timeout: float) -> None:
    """Show what the cache store at URL holds: entries, bytes and ages, per namespace.

    URL is a tier URL as given to CachedClient(tiers=[...]), such as
    sqlite:///path/cache.db or redis://localhost:6379/0. A memcached store cannot list its
    keys: for it, only the servers' own counters are shown, when the backend reports them.
    """
    from llmcache.tools.inventory import inspect_store, render

    tier = _open(url, timeout)
    try:
        with _store_errors(url):
            report = inspect_store(tier, namespace=namespace)
    finally:
        tier.backend.close()
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        for line in render(report):
            click.echo(line)


@main.command()
@click.argument("url")
@click.option(
    "--namespace",
    "-n",
    metavar="NS",
    callback=_namespace,
    help="The namespace to clear (default: 'default').",
)
@click.option("--all-namespaces", is_flag=True, help="Clear every namespace.")
@click.option(
    "--key",
    metavar="PATTERN",
    help="Only logical keys matching this glob: '*' any run, '?' one character, '\\' escapes.",
)
@click.option(
    "--older-than",
    metavar="S",
    type=click.FloatRange(min=0),
    help="Only entries created at least S seconds ago.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@_TIMEOUT
def clear(
    url: str,
    namespace: str | None,
    all_namespaces: bool,
    key: str | None,
    older_than: float | None,
    yes: bool,
    timeout: float,
) -> None:
    """Remove entries from the cache store at URL (namespace 'default' unless given).

    Works on every store, memcached included (which cannot say how many it removed).
    """
    from llmcache.tools.inventory import clear_pattern, namespaces_in

    if namespace is not None and all_namespaces:
        raise click.UsageError("give --namespace or --all-namespaces, not both")
    if key == "":
        raise click.BadParameter("the key pattern is empty", param_hint="--key")
    tier = _open(url, timeout)
    try:
        with _store_errors(url):
            if all_namespaces and key is not None:
                if not tier.caps.listing:
                    raise click.UsageError(
                        f"--key with --all-namespaces needs a store that can list its "
                        f"namespaces, and a {tier.url.kind} store cannot: give --namespace"
                    )
                patterns = [clear_pattern(ns, key) for ns in namespaces_in(tier)]
            else:
                target = None if all_namespaces else namespace or "default"
                patterns = [clear_pattern(target, key)]
            where = "every namespace" if all_namespaces else f"namespace {target!r}"
            what = f"entries of {where}" + (f" whose key matches {key!r}" if key else "")
            if older_than is not None:
                what += f" created at least {older_than:g} s ago"
            if not yes:
                click.confirm(f"Remove the {what} from {redact(url)}?", abort=True)
            removed: int | None = 0
            for pattern in patterns:
                count = tier.backend.clear(pattern, older_than)
                removed = None if count is None or removed is None else removed + count
    finally:
        tier.backend.close()
    if removed is None:
        click.echo(f"Removed the {what} (a {tier.url.kind} store cannot count them).")
    else:
        click.echo(f"Removed {removed} entr{'y' if removed == 1 else 'ies'}.")


@main.command()
@click.argument("url")
@click.option(
    "--request",
    "request_file",
    required=True,
    metavar="FILE.json",
    type=click.File("rb"),
    help="The request: the SDK call's arguments, or a request as a recording holds it.",
)
@click.option(
    "--endpoint",
    type=click.Choice(["chat.completions", "completions", "embeddings", "responses", "messages"]),
    help="The endpoint of bare arguments (default chat.completions).",
)
@click.option("--base-url", metavar="URL", help="The base URL of bare arguments.")
@click.option(
    "--namespace", "-n", default="default", callback=_namespace, help="Namespace to look in."
)
@click.option(
    "--limit",
    default=3,
    show_default=True,
    type=click.IntRange(1, 50),
    help="How many nearest entries to show.",
)
@click.option(
    "--scan",
    default=SCAN_LIMIT,
    show_default=True,
    type=click.IntRange(min=1),
    help="The most entries of the namespace read on a miss.",
)
@_TIMEOUT
def explain(
    url: str,
    request_file: BinaryIO,
    endpoint: str | None,
    base_url: str | None,
    namespace: str,
    limit: int,
    scan: int,
    timeout: float,
) -> None:
    """Explain how the store at URL answers a request: its key, whether it is held, and on
    a miss the nearest entries of the namespace with the fields that differ.

    Recordings (recording:///tests/cassettes/test_bot.jsonl) keep every request beside its
    answer; other stores keep those written with keep_requests=True (llmcache serve
    --keep-requests). Memcached cannot list its keys: there the explanation stops at the key.
    """
    from llmcache.testmode.explain import explain as run_explain

    try:
        request = json.loads(request_file.read())
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--request") from exc
    if not isinstance(request, dict):
        raise click.BadParameter("the request must be a JSON object", param_hint="--request")
    with _store_errors(url):
        try:
            found = run_explain(
                url,
                request,
                endpoint=endpoint,
                upstream=base_url,
                namespace=namespace,
                limit=limit,
                timeout=timeout,
                scan=scan,
            )
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(found.text())


if __name__ == "__main__":
    main(prog_name="llmcache")
