"""The recording store: a cache backend over one recording file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import MODEL
from openai import OpenAI

from llmcache.testmode import RecordingStore
from llmcache.testmode.session import Recording, install, uninstall
from llmcache.testmode.store import flush_all, open_recording
from llmcache.tools.simulator import Simulator


def ask(sim: Simulator, content: str) -> str:
    client = OpenAI(base_url=sim.base_url, api_key="sk-x", max_retries=0)
    answer = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": content}]
    )
    return answer.choices[0].message.content or ""


def record(store: RecordingStore, sim: Simulator, test: str, *questions: str) -> list[str]:
    install(Recording(store, "record", test))
    try:
        return [ask(sim, question) for question in questions]
    finally:
        uninstall()


@pytest.fixture
def path(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "test_bot.jsonl"
    flush_all()


def test_a_recording_given_a_fresh_store_is_the_store_the_cache_reads(
    path: Path, sim: Simulator
) -> None:
    (answer,) = record(open_recording(path), sim, "t.py::a", "Hello")
    open_recording(path).flush()
    fresh = RecordingStore(path)  # as a new session reads the file
    install(Recording(fresh, "strict", "t.py::a"))
    try:
        assert ask(sim, "Hello") == answer
    finally:
        uninstall()
    assert sim.count() == 1


def test_two_processes_writing_one_file_keep_each_others_lines(path: Path, sim: Simulator) -> None:
    first, second = RecordingStore(path), RecordingStore(path)  # as two xdist workers
    record(first, sim, "t.py::a", "one")
    first.flush()
    record(second, sim, "t.py::b", "two")  # read the file before a's lines were in it
    second.flush()
    tests = [json.loads(line)["test"] for line in path.read_text().splitlines()]
    assert sorted(tests) == ["t.py::a", "t.py::b"]


def test_a_test_re_recorded_without_calls_leaves_no_line_and_no_empty_file(
    path: Path, sim: Simulator
) -> None:
    store = RecordingStore(path)
    record(store, sim, "t.py::a", "one")
    store.flush()
    store.begin("t.py::a", "record")
    store.flush()
    assert not path.exists()
    store.begin("t.py::b", "record")
    store.flush()
    assert not path.exists()  # nothing recorded: no file made


def test_clear_delete_and_scan_work_on_the_recorded_keys(path: Path, sim: Simulator) -> None:
    store = RecordingStore(path)
    record(store, sim, "t.py::a", "one", "two")
    keys = [entry.key for entry in store.scan()]
    assert len(keys) == 2
    assert all(key.startswith("llmcache:test:v1-") for key in keys)
    store.delete(keys[:1])
    assert len(list(store.scan())) == 1
    assert store.clear(older_than=10) == 0  # recordings keep no dates
    assert store.clear("llmcache:test:*") == 1
    assert list(store.scan()) == []
