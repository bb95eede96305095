"""The ``llmcache serve`` command: the caching proxy on uvicorn.

Kept apart from :mod:`llmcache.serve` so that ``llmcache --help`` needs no server package;
Starlette and uvicorn are imported when the command runs.
"""

from __future__ import annotations

import os

import click

from llmcache.backends.urls import redact
from llmcache.errors import ConfigError

__all__ = ["serve"]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--tier",
    "tiers",
    multiple=True,
    metavar="URL",
    help="Cache tier URL, L1 first; repeat for more (default: a SQLite file in ~/.cache/llmcache).",
)
@click.option(
    "--upstream-openai",
    default="https://api.openai.com/v1",
    show_default=True,
    metavar="URL",
    help="OpenAI base URL: /v1/chat/completions goes to <URL>/chat/completions.",
)
@click.option(
    "--upstream-anthropic",
    default="https://api.anthropic.com",
    show_default=True,
    metavar="URL",
    help="Anthropic base URL: /v1/messages goes to <URL>/v1/messages.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Worker processes (give them a shared tier, such as Redis, to share entries).",
)
@click.option("--namespace", default="default", show_default=True, help="Namespace of entries.")
@click.option(
    "--isolate-by-key",
    is_flag=True,
    help="Give each caller's API key a namespace of its own (a keyed hash of the key).",
)
@click.option(
    "--admin-token",
    envvar="LLMCACHE_ADMIN_TOKEN",
    metavar="TOKEN",
    help="Bearer token of DELETE /api/cache (also $LLMCACHE_ADMIN_TOKEN); unset: it is off.",
)
@click.option(
    "--max-body-bytes",
    default=8 * 1024 * 1024,
    show_default=True,
    type=click.IntRange(min=1),
    help="Largest request body accepted (larger: 413).",
)
@click.option(
    "--upstream-timeout",
    default=600.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds an upstream answer may take (then 504).",
)
@click.option(
    "--graceful-timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds a shutdown waits for in-flight requests and streams.",
)
@click.option(
    "--keep-requests",
    is_flag=True,
    help="Store each answer's request in its entry, so 'llmcache explain' can show the "
    "nearest entries of a miss and the fields that differ.",
)
@click.option("--access-log", is_flag=True, help="Log each request (method, path, status).")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
def serve(
    host: str,
    port: int,
    tiers: tuple[str, ...],
    upstream_openai: str,
    upstream_anthropic: str,
    workers: int,
    namespace: str,
    isolate_by_key: bool,
    admin_token: str | None,
    max_body_bytes: int,
    upstream_timeout: float,
    graceful_timeout: float,
    keep_requests: bool,
    access_log: bool,
    log_level: str,
) -> None:
    """Run a caching proxy for OpenAI- and Anthropic-compatible APIs.

    Point an OpenAI SDK's base_url at http://HOST:PORT/v1 and Anthropic's at
    http://HOST:PORT. The dashboard is at http://HOST:PORT/.
    """
    try:
        import uvicorn

        from llmcache.serve import ServeConfig, create_app
        from llmcache.serve.config import CONFIG_ENV
    except ImportError as exc:
        raise click.ClickException(
            f"llmcache serve needs its extra: pip install 'llmcache[serve]' ({exc})"
        ) from exc
    try:
        config = ServeConfig(
            tiers=tiers,
            upstream_openai=upstream_openai,
            upstream_anthropic=upstream_anthropic,
            namespace=namespace,
            isolate_by_key=isolate_by_key,
            admin_token=admin_token,
            max_body_bytes=max_body_bytes,
            upstream_timeout=upstream_timeout,
            keep_requests=keep_requests,
        )
        app = create_app(config) if workers == 1 else None
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    shown = ", ".join(redact(t) for t in config.tiers)
    click.echo(f"llmcache serve: tiers {shown}; dashboard http://{host}:{port}/", err=True)
    options = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": access_log,
        "timeout_graceful_shutdown": graceful_timeout,
        "lifespan": "on",
        "server_header": False,
    }
    if app is not None:
        uvicorn.run(app, **options)  # type: ignore[arg-type]
        return
    # the workers build the app from the settings this process leaves in their environment
    os.environ[CONFIG_ENV] = config.to_json()
    uvicorn.run("llmcache.serve.app:create_app", factory=True, workers=workers, **options)  # type: ignore[arg-type]
