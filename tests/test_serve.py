"""``llmcache serve`` in-process: the proxy's API door, its errors, tenants and operations."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import orjson
import pytest
from conftest import MODEL

from llmcache import ConfigError
from llmcache.serve import ServeApp, ServeConfig, create_app
from llmcache.serve.activity import MAX_GROUPS, OTHER, Activity, Served
from llmcache.tools.simulator import Simulator
from tests.serve_fixtures import in_process

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "What is a cache?"}]}
MESSAGES = {
    "model": "claude-3-5-haiku-latest",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "What is a cache?"}],
}
ADMIN = "admin-token-for-tests"


@pytest.fixture
async def proxy(sim: Simulator) -> AsyncIterator[tuple[ServeApp, Any]]:
    app, client = in_process(sim, admin_token=ADMIN)
    async with client:
        yield app, client
    await app.transport.aclose()


def stored(app: ServeApp) -> dict[str, bytes]:
    """Return every key and value in the proxy's memory tier, all namespaces."""
    backend = app.core.tier_list[0].backend.backend
    return {key: item.value for key, item in backend._items.items()}


async def test_a_repeated_chat_call_is_a_hit_with_outcome_headers(
    proxy: Any, sim: Simulator
) -> None:
    _, client = proxy
    first = await client.post("/v1/chat/completions", json=CHAT)
    second = await client.post("/v1/chat/completions", json=CHAT)
    assert first.status_code == second.status_code == 200
    assert first.headers["llmcache-status"] == "miss"
    assert second.headers["llmcache-status"] == "hit"
    assert second.headers["llmcache-tier"] == "L1:memory"
    assert second.headers["age"] == "0"
    assert second.headers["llmcache-key"] == first.headers["llmcache-key"]
    assert second.json() == first.json()
    assert sim.count() == 1
    assert sim.requests[0].path == "/v1/chat/completions"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "A cache is"}),
        ("/v1/embeddings", {"model": "text-embedding-3-small", "input": ["a", "b"]}),
        ("/v1/responses", {"model": MODEL, "input": "What is a cache?"}),
        ("/v1/messages", MESSAGES),
    ],
    ids=["completions", "embeddings", "responses", "messages"],
)
async def test_every_cached_endpoint_goes_to_its_upstream_once(
    proxy: Any, sim: Simulator, path: str, body: dict[str, Any]
) -> None:
    _, client = proxy
    first = await client.post(path, json=body)
    second = await client.post(path, json=body)
    assert first.status_code == 200, first.text
    assert second.headers["llmcache-status"] == "hit"
    assert second.json() == first.json()
    assert [r.path for r in sim.requests] == [path]


async def test_a_stream_passes_through_as_events_and_replays_from_the_cache(
    proxy: Any, sim: Simulator
) -> None:
    _, client = proxy
    body = {**CHAT, "stream": True}
    live = await client.post("/v1/chat/completions", json=body)
    replay = await client.post("/v1/chat/completions", json=body)
    assert live.headers["content-type"].startswith("text/event-stream")
    assert live.headers["llmcache-status"] == "miss"
    assert replay.headers["llmcache-status"] == "hit"

    def text(events: str) -> str:
        parts = []
        for line in events.splitlines():
            if line.startswith("data: {"):
                for choice in orjson.loads(line[6:])["choices"]:
                    parts.append(choice["delta"].get("content") or "")
        return "".join(parts)

    assert text(replay.text) == text(live.text) != ""
    assert live.text.rstrip().endswith("data: [DONE]")
    assert sim.count() == 1


async def test_other_paths_are_proxied_untouched(proxy: Any, sim: Simulator) -> None:
    _, client = proxy
    response = await client.get("/v1/models?limit=2", headers={"authorization": "Bearer sk-1"})
    assert response.status_code == 404  # the simulator's own answer, passed through
    assert "Unknown request URL: GET /v1/models" in response.json()["error"]["message"]
    assert "llmcache-status" not in response.headers
    assert sim.requests[0].path == "/v1/models"
    assert sim.requests[0].headers["authorization"] == "Bearer sk-1"


async def test_paths_under_messages_go_to_anthropic_and_other_methods_pass(
    sim: Simulator,
) -> None:
    # a prefix on the Anthropic upstream shows which upstream each request went to
    app, client = in_process(sim, upstream_anthropic=sim.anthropic_base_url + "/anthropic")
    async with client:
        counted = await client.post("/v1/messages/count_tokens", json=MESSAGES)
        listed = await client.get("/v1/chat/completions?limit=1")
    assert counted.status_code == listed.status_code == 404  # the simulator's answers
    assert [(r.method, r.path) for r in sim.requests] == [
        ("POST", "/anthropic/v1/messages/count_tokens"),
        ("GET", "/v1/chat/completions"),
    ]
    assert app.core.stats_snapshot().requests == 0  # neither was a cached call
    await app.transport.aclose()


async def test_the_api_key_is_forwarded_and_control_headers_are_not(
    proxy: Any, sim: Simulator
) -> None:
    _, client = proxy
    headers = {"authorization": "Bearer sk-secret", "x-api-key": "sk-ant", "llmcache-ttl": "60"}
    await client.post("/v1/chat/completions", json=CHAT, headers=headers)
    seen = sim.requests[0].headers
    assert seen["authorization"] == "Bearer sk-secret"
    assert seen["x-api-key"] == "sk-ant"
    assert "llmcache-ttl" not in seen


@pytest.mark.parametrize(
    ("path", "content", "headers", "status", "says"),
    [
        (
            "/v1/chat/completions",
            b"{not json",
            {"content-type": "application/json"},
            400,
            "not valid JSON",
        ),
        (
            "/v1/chat/completions",
            b"[1, 2]",
            {"content-type": "application/json"},
            400,
            "JSON object",
        ),
        (
            "/v1/chat/completions",
            orjson.dumps(CHAT),
            {"content-type": "text/plain"},
            415,
            "'text/plain'",
        ),
        (
            "/v1/messages",
            orjson.dumps(MESSAGES),
            {"content-type": "application/x-www-form-urlencoded"},
            415,
            "application/json",
        ),
        (
            "/v1/chat/completions",
            orjson.dumps(CHAT),
            {"content-type": "application/json", "cache-control": "max-age=soon"},
            400,
            "max-age",
        ),
        (
            "/v1/messages",
            orjson.dumps(MESSAGES),
            {"content-type": "application/json", "cache-control": "no-stor"},
            400,
            "no-stor",
        ),
        (
            "/v1/chat/completions",
            orjson.dumps(CHAT),
            {"content-type": "application/json", "llmcache-ttl": "soon"},
            400,
            "llmcache-ttl",
        ),
    ],
    ids=["not-json", "not-object", "text-plain", "form", "max-age", "unknown-directive", "ttl"],
)
async def test_a_malformed_request_is_refused_before_any_upstream_call(
    proxy: Any,
    sim: Simulator,
    path: str,
    content: bytes,
    headers: dict[str, str],
    status: int,
    says: str,
) -> None:
    app, client = proxy
    response = await client.post(path, content=content, headers=headers)
    assert response.status_code == status
    error = response.json()["error"]
    assert says in error["message"]
    if path == "/v1/messages":
        assert response.json()["type"] == "error"  # Anthropic's format
    else:
        assert "type" in error  # OpenAI's format: {"error": {...}}
    assert sim.count() == 0
    assert app.core.stats_snapshot().requests == 0


async def test_an_oversized_body_is_refused_with_413(sim: Simulator) -> None:
    app, client = in_process(sim, max_body_bytes=200)
    async with client:
        big = {**CHAT, "messages": [{"role": "user", "content": "x" * 500}]}
        response = await client.post("/v1/chat/completions", json=big)
        small = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 413
    assert "200 bytes" in response.json()["error"]["message"]
    assert small.status_code == 200
    assert sim.count() == 1
    await app.transport.aclose()


async def test_an_unknown_path_outside_the_api_is_a_404_in_openai_format(proxy: Any) -> None:
    _, client = proxy
    response = await client.get("/chat/completions")
    assert response.status_code == 404
    assert "/v1/" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("path", "body"),
    [("/v1/chat/completions", CHAT), ("/v1/messages", MESSAGES)],
    ids=["openai", "anthropic"],
)
async def test_an_unreachable_upstream_is_a_502_in_the_providers_format(
    sim: Simulator, path: str, body: dict[str, Any]
) -> None:
    config = ServeConfig(
        tiers=("memory://",),
        upstream_openai="http://127.0.0.1:9/v1",  # the discard port: nothing listens
        upstream_anthropic="http://127.0.0.1:9",
    )
    app = create_app(config)
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://p"
    ) as client:
        response = await client.post(path, json=body)
        health = await client.get("/healthz")
    assert response.status_code == 502
    data = response.json()
    assert "cannot be reached" in data["error"]["message"]
    assert (data.get("type") == "error") == (path == "/v1/messages")
    assert health.status_code == 200  # the proxy stays up
    await app.transport.aclose()


async def test_only_if_cached_miss_is_a_504_without_upstream_call(
    proxy: Any, sim: Simulator
) -> None:
    _, client = proxy
    headers = {"cache-control": "only-if-cached"}
    response = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
    assert response.status_code == 504
    assert sim.count() == 0
    await client.post("/v1/chat/completions", json=CHAT)
    again = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
    assert again.headers["llmcache-status"] == "hit"


async def test_an_upstream_error_is_passed_through_and_never_stored(
    proxy: Any, sim: Simulator
) -> None:
    app, client = proxy
    sim.fail_next(1, status=429)
    failed = await client.post("/v1/chat/completions", json=CHAT)
    assert failed.status_code == 429
    assert failed.json()["error"]["message"] == "simulated failure"
    assert stored(app) == {}
    ok = await client.post("/v1/chat/completions", json=CHAT)
    assert ok.status_code == 200
    assert ok.headers["llmcache-status"] == "miss"
    assert sim.count() == 2


async def test_isolate_by_key_keeps_each_keys_entries_apart(sim: Simulator) -> None:
    app, client = in_process(sim, isolate_by_key=True, secret="s" * 32)
    alice = {"authorization": "Bearer sk-alice"}
    bob = {"authorization": "Bearer sk-bob"}
    async with client:
        first = await client.post("/v1/chat/completions", json=CHAT, headers=alice)
        other = await client.post("/v1/chat/completions", json=CHAT, headers=bob)
        again = await client.post("/v1/chat/completions", json=CHAT, headers=alice)
        anthropic_bob = await client.post(
            "/v1/chat/completions", json=CHAT, headers={"x-api-key": "sk-bob"}
        )
    assert first.headers["llmcache-status"] == "miss"
    assert other.headers["llmcache-status"] == "miss"  # bob never sees alice's entry
    assert again.headers["llmcache-status"] == "hit"
    assert anthropic_bob.headers["llmcache-status"] == "miss"  # another key, another namespace
    assert sim.count() == 3
    entries = stored(app)
    assert len({key.split(":")[1] for key in entries}) == 3  # three namespaces
    everything = b"".join(key.encode() + value for key, value in entries.items())
    assert b"sk-alice" not in everything
    assert b"sk-bob" not in everything
    await app.transport.aclose()


async def test_health_stats_and_metrics(proxy: Any) -> None:
    _, client = proxy
    await client.post("/v1/chat/completions", json=CHAT)
    await client.post("/v1/chat/completions", json=CHAT)
    health = await client.get("/healthz")
    assert health.json() == {"status": "ok", "tiers": ["L1:memory"]}
    stats = (await client.get("/api/stats")).json()
    assert stats["stats"]["requests"] == 2
    assert stats["stats"]["hits"] == 1
    assert stats["stats"]["hit_rate"] == 0.5
    assert stats["stats"]["tokens_saved"] > 0
    assert stats["models"][MODEL]["hits"] == 1
    assert stats["tiers"]["L1:memory"]["tokens_saved"] == stats["stats"]["tokens_saved"]
    assert [r["outcome"] for r in stats["recent"]] == ["hit", "miss"]
    metrics = (await client.get("/metrics")).text
    names = {
        line.split("{")[0].split(" ")[0]
        for line in metrics.splitlines()
        if line and not line.startswith("#")
    }
    assert {"llmcache_hits_total", "llmcache_misses_total", "llmcache_tokens_saved_total"} <= names
    assert all(name.startswith("llmcache_") for name in names)
    assert (
        'llmcache_hits_total{endpoint="chat.completions",namespace="default",tier="L1:memory"} 1.0'
        in metrics
    )


async def test_clearing_needs_the_admin_token(proxy: Any, sim: Simulator) -> None:
    _, client = proxy
    await client.post("/v1/chat/completions", json=CHAT)
    assert (await client.delete("/api/cache")).status_code == 401
    wrong = await client.delete("/api/cache", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401
    admin = {"authorization": f"Bearer {ADMIN}"}
    bad = await client.delete("/api/cache?older_than=soon", headers=admin)
    assert bad.status_code == 400
    assert "'soon'" in bad.json()["error"]["message"]
    unknown = await client.delete("/api/cache?pattern=x", headers=admin)
    assert "'pattern'" in unknown.json()["error"]["message"]
    kept = await client.delete("/api/cache?key=other*", headers=admin)
    assert kept.json()["removed"] == 0
    cleared = await client.delete("/api/cache?older_than=0", headers=admin)
    assert cleared.json() == {"removed": 1, "namespace": "default"}
    after = await client.post("/v1/chat/completions", json=CHAT)
    assert after.headers["llmcache-status"] == "miss"
    assert sim.count() == 2


async def test_admin_endpoints_are_off_without_a_token(sim: Simulator) -> None:
    app, client = in_process(sim)
    async with client:
        response = await client.delete("/api/cache", headers={"authorization": "Bearer x"})
    assert response.status_code == 403
    assert "--admin-token" in response.json()["error"]["message"]
    await app.transport.aclose()


async def test_the_dashboard_page_is_served(proxy: Any) -> None:
    _, client = proxy
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'id="hit-rate"' in page.text
    assert "api/stats" in page.text


async def test_an_upstream_slower_than_the_timeout_is_a_504(sim: Simulator) -> None:
    app, client = in_process(sim, upstream_timeout=0.2)
    sim.delay = 1.0
    async with client:
        response = await client.post("/v1/messages", json=MESSAGES)
    assert response.status_code == 504
    assert response.json()["error"]["type"] == "timeout_error"
    assert "ReadTimeout" in response.json()["error"]["message"]
    await app.transport.aclose()


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"upstream_openai": "localhost:8000"}, "--upstream-openai must be an http"),
        ({"max_body_bytes": 0}, "--max-body-bytes must be >= 1, not 0"),
        ({"upstream_timeout": 0}, "--upstream-timeout must be > 0, not 0"),
        ({"admin_token": "short"}, "--admin-token must be at least 8 characters"),
        ({"namespace": "a b"}, "namespace 'a b'"),
    ],
)
def test_a_bad_setting_is_named(options: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)):
        create_app(ServeConfig(tiers=("memory://",), **options))


def test_the_dashboard_counts_a_bounded_number_of_models() -> None:
    activity = Activity(recent=10)
    for number in range(MAX_GROUPS + 50):
        activity.served(
            Served(0.0, "/v1/chat/completions", f"m{number}", 200, "miss", "", None, 1.0, False)
        )
    assert len(activity.models) == MAX_GROUPS + 1
    assert activity.models[OTHER]["requests"] == 50
    assert len(activity.recent) == 10


def test_the_isolation_secret_is_kept_for_the_workers_and_restarts(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("LLMCACHE_SERVE_SECRET", raising=False)
    first = ServeConfig(tiers=("memory://",), isolate_by_key=True)
    again = ServeConfig(tiers=("memory://",), isolate_by_key=True)
    assert first.secret == again.secret
    assert len(first.secret) == 64
    secret_file = tmp_path / "llmcache" / "serve-secret"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert ServeConfig.from_json(first.to_json()) == first
    monkeypatch.setenv("LLMCACHE_SERVE_SECRET", "given-by-the-operator")
    assert ServeConfig(tiers=("memory://",), isolate_by_key=True).secret == "given-by-the-operator"
    shown = repr(ServeConfig(tiers=("memory://",), isolate_by_key=True, admin_token="t" * 20))
    assert "given-by-the-operator" not in shown
    assert "t" * 20 not in shown
