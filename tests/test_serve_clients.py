"""A real ``llmcache serve`` process: the SDKs, curl and Node unchanged; secrets; shutdown.

Each test starts the command as users do, on a free 127.0.0.1 port, over the simulator.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from conftest import MODEL, chat

from llmcache.tools.simulator import Simulator
from tests.serve_fixtures import ServeProcess, start_serve
from tests.servers import require_binary, unavailable

SECRET = "sk-live-Zx9SECRETKEYwhichMustNeverBeStored"
ANTHROPIC_SECRET = "sk-ant-api03-ANOTHERsecretNEVERstored"
CLAUDE = "claude-3-5-haiku-latest"


@pytest.fixture
def serve(sim: Simulator, tmp_path: Path) -> Iterator[ServeProcess]:
    """``llmcache serve`` with a SQLite tier of its own."""
    process = start_serve(sim, tmp_path, "--tier", f"sqlite:///{tmp_path / 'cache.db'}")
    yield process
    process.stop()


def _openai(serve: ServeProcess) -> openai.OpenAI:
    return openai.OpenAI(api_key=SECRET, base_url=serve.url + "/v1", max_retries=0)


def test_the_openai_sdk_works_unchanged(serve: ServeProcess, sim: Simulator) -> None:
    client = _openai(serve)
    first = client.chat.completions.with_raw_response.create(**chat())
    second = client.chat.completions.with_raw_response.create(**chat())
    assert first.headers["llmcache-status"] == "miss"
    assert second.headers["llmcache-status"] == "hit"
    assert second.headers["llmcache-tier"] == "L1:sqlite"
    assert second.parse().model_dump() == first.parse().model_dump()
    streamed = client.chat.completions.create(**chat(), stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == first.parse().choices[0].message.content
    embedded = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(embedded.data) == 2
    answer = client.responses.create(model=MODEL, input="What is a cache?")
    again = client.responses.create(model=MODEL, input="What is a cache?")
    assert again.output_text == answer.output_text
    assert sim.count() == 3  # chat once, embeddings once, responses once


async def test_the_async_openai_sdk_streams_through(serve: ServeProcess, sim: Simulator) -> None:
    client = openai.AsyncOpenAI(api_key=SECRET, base_url=serve.url + "/v1", max_retries=0)
    for _ in range(2):
        stream = await client.chat.completions.create(**chat("Stream me"), stream=True)
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        assert "".join(parts)
    assert sim.count() == 1
    await client.close()


def test_the_anthropic_sdk_works_unchanged(serve: ServeProcess, sim: Simulator) -> None:
    client = anthropic.Anthropic(api_key=ANTHROPIC_SECRET, base_url=serve.url, max_retries=0)
    request: dict[str, Any] = {
        "model": CLAUDE,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "What is a cache?"}],
    }
    first = client.messages.with_raw_response.create(**request)
    second = client.messages.with_raw_response.create(**request)
    assert second.headers["llmcache-status"] == "hit"
    assert second.parse().model_dump() == first.parse().model_dump()
    with client.messages.stream(**request) as stream:
        assert stream.get_final_text() == first.parse().content[0].text  # type: ignore[union-attr]
    assert sim.count() == 1
    seen = sim.requests[0].headers  # forwarded as the SDK sent it (x-api-key or a bearer)
    assert ANTHROPIC_SECRET in (seen.get("x-api-key", "") + seen.get("authorization", ""))
    with pytest.raises(anthropic.BadRequestError, match="no-stor"):
        client.messages.create(**request, extra_headers={"cache-control": "no-stor"})


def test_curl_works_unchanged(serve: ServeProcess, sim: Simulator) -> None:
    curl = require_binary("curl")
    body = json.dumps(chat())

    def call() -> tuple[str, dict[str, Any]]:
        done = subprocess.run(
            [
                curl,
                "-sS",
                "--max-time",
                "30",
                "-D",
                "-",
                serve.url + "/v1/chat/completions",
                "-H",
                "content-type: application/json",
                "-H",
                f"authorization: Bearer {SECRET}",
                "-d",
                body,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        head, _, payload = done.stdout.partition("\n\n")  # text mode: CRLF read as LF
        return head.lower(), json.loads(payload)

    head1, first = call()
    head2, second = call()
    assert "llmcache-status: miss" in head1
    assert "llmcache-status: hit" in head2
    assert "age: " in head2
    assert second == first
    assert sim.count() == 1


def _npm_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("LLMCACHE_NPM_DIR") or Path(base) / "llmcache" / "npm")


NODE_SCRIPT = r"""
const OpenAI = require("openai");
const client = new OpenAI({ apiKey: process.env.KEY, baseURL: process.env.BASE, maxRetries: 0 });
(async () => {
  const body = { model: "gpt-4o-mini", messages: [{ role: "user", content: "Hello from Node" }] };
  const out = [];
  for (let i = 0; i < 2; i++) {
    const { data, response } = await client.chat.completions.create(body).withResponse();
    const status = response.headers.get("llmcache-status");
    out.push({ status, text: data.choices[0].message.content });
  }
  const stream = await client.chat.completions.create({ ...body, stream: true });
  let streamed = "";
  for await (const chunk of stream) streamed += chunk.choices[0]?.delta?.content || "";
  out.push({ status: "stream", text: streamed });
  console.log(JSON.stringify(out));
})().catch((err) => { console.error(err); process.exit(1); });
"""


def test_the_node_openai_package_works_unchanged(serve: ServeProcess, sim: Simulator) -> None:
    node = require_binary("node")
    modules = _npm_dir() / "node_modules"
    if not (modules / "openai").is_dir():
        unavailable(f"the openai npm package in {modules} (scripts/test installs it)")
    done = subprocess.run(
        [node, "-e", NODE_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "NODE_PATH": str(modules), "KEY": SECRET, "BASE": serve.url + "/v1"},
    )
    assert done.returncode == 0, done.stderr
    first, second, streamed = json.loads(done.stdout)
    assert (first["status"], second["status"]) == ("miss", "hit")
    assert first["text"] == second["text"] == streamed["text"] != ""
    assert sim.count() == 1


def test_api_keys_are_never_stored_or_logged(
    serve: ServeProcess, sim: Simulator, tmp_path: Path
) -> None:
    client = _openai(serve)
    client.chat.completions.create(**chat())
    client.chat.completions.create(**chat())
    list(client.chat.completions.create(**chat("streamed"), stream=True))
    client.embeddings.create(model="text-embedding-3-small", input="a")
    claude = anthropic.Anthropic(api_key=ANTHROPIC_SECRET, base_url=serve.url, max_retries=0)
    claude.messages.create(model=CLAUDE, max_tokens=32, messages=[{"role": "user", "content": "x"}])
    sim.fail_next(1, status=401)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(**chat("refused"))
    serve.stop()
    store = tmp_path / "cache.db"
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    assert rows[0] > 0
    everything = b"".join(p.read_bytes() for p in tmp_path.glob("cache.db*"))
    assert len(everything) > 0
    log = serve.output()
    assert "POST /v1/chat/completions" in log  # the access log was on
    for secret in (SECRET, ANTHROPIC_SECRET, SECRET[10:30]):
        assert secret.encode() not in everything
        assert secret not in log


def test_a_client_leaving_mid_stream_leaves_nothing_stored(
    serve: ServeProcess, sim: Simulator
) -> None:
    sim.delay = 1.0  # the events arrive over a second
    body = {**chat("Leave early"), "stream": True}
    with (
        httpx2.Client(base_url=serve.url, timeout=30) as http,
        http.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        assert response.headers["llmcache-status"] == "miss"
        next(response.iter_raw())
    time.sleep(1.5)  # the upstream stream would have ended by now
    sim.delay = 0.0
    again = _openai(serve).chat.completions.with_raw_response.create(**chat("Leave early"))
    assert again.headers["llmcache-status"] == "miss"
    assert sim.count() == 2


def test_a_graceful_shutdown_finishes_the_streams_in_flight(sim: Simulator, tmp_path: Path) -> None:
    process = start_serve(sim, tmp_path, "--tier", "memory://")
    sim.delay = 1.5
    received: list[str] = []

    def consume() -> None:
        client = _openai(process)
        stream = client.chat.completions.create(**chat("Finish me"), stream=True)
        received.extend(c.choices[0].delta.content or "" for c in stream if c.choices)

    reader = threading.Thread(target=consume)
    reader.start()
    deadline = time.monotonic() + 10
    while sim.count() == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # the stream has begun
    process.process.send_signal(signal.SIGTERM)
    reader.join(timeout=30)
    # uvicorn raises the signal again once it has shut down, so the parent sees it
    assert process.stop() in (0, -signal.SIGTERM)
    assert "Finished server process" in process.output()
    assert not reader.is_alive()
    sim.delay = 0.0
    whole = openai.OpenAI(api_key="x", base_url=sim.base_url).chat.completions.create(
        **chat("Finish me")
    )
    assert "".join(received) == whole.choices[0].message.content


def test_the_serve_command_names_a_bad_flag(tmp_path: Path) -> None:
    llmcache = shutil.which("llmcache")
    assert llmcache is not None
    done = subprocess.run(
        [llmcache, "serve", "--upstream-openai", "ftp://nowhere", "--tier", "memory://"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)},
    )
    assert done.returncode != 0
    assert (
        "--upstream-openai must be an http:// or https:// base URL, not 'ftp://nowhere'"
        in done.stderr
    )
