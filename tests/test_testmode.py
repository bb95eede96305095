"""The test mode: the pytest plugin recording, replaying and strictly replaying LLM calls.

Each test writes a small test suite with ``pytester`` whose tests call the simulator through
real SDK clients, runs it under ``--llmcache=...``, and checks the outcome, the recording
file and what reached the simulator.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmcache._plugins import get_registry
from llmcache.tools.simulator import Simulator

pytest_plugins = ["pytester"]

API_KEY = "sk-testmode-secret-key-0123456789"

CONFTEST = """
import json, os
import pytest

OUT = {out!r}


@pytest.fixture
def note(request):
    '''Write what a test saw into OUT, for the outer test to compare runs.'''
    def write(value):
        seen = json.load(open(OUT)) if os.path.exists(OUT) else {{}}
        seen[request.node.name] = value
        json.dump(seen, open(OUT, "w"))
    return write
"""

CHAT = """
from conftest_values import *
from openai import OpenAI

def client():
    return OpenAI(base_url=BASE, api_key=API_KEY, max_retries=0)

def ask(content):
    answer = client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": content}]
    )
    return answer.choices[0].message.content
"""


@pytest.fixture(scope="module", autouse=True)
def _sdks_imported_once() -> None:
    """Import here what every inner run would import afresh.

    ``runpytest`` runs in this process, but pytester restores ``sys.modules`` after each
    run, so a module first imported inside one run is imported again by the next: the
    Anthropic SDK alone is some 3300 modules, most of an inner run's time. Modules already
    imported before a run are kept.
    """
    for name in ("anthropic", "filelock", "numpy", "openai.resources", "openai.lib.streaming"):
        importlib.import_module(name)
    get_registry().providers()  # the provider plugins and their SDKs


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """A simulator of this test's own (some tests stop it)."""
    with Simulator() as simulator:
        yield simulator


@pytest.fixture
def project(pytester: pytest.Pytester, sim: Simulator, tmp_path: Path) -> pytest.Pytester:
    """A test project that knows the simulator's URLs (not whether it is up)."""
    pytester.makeconftest(CONFTEST.format(out=str(tmp_path / "seen.json")))
    pytester.makepyfile(
        conftest_values=f"BASE = {sim.base_url!r}\nANTHROPIC_BASE = "
        f"{sim.anthropic_base_url!r}\nAPI_KEY = {API_KEY!r}\n"
    )
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    return pytester


def seen(project: pytest.Pytester, tmp_path: Path) -> dict[str, Any]:
    """What the project's tests noted, then forget it (the next run notes afresh)."""
    path = tmp_path / "seen.json"
    data: dict[str, Any] = json.loads(path.read_text())
    path.unlink()
    return data


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run the project's tests in this process (without the unraisable-exception plugin,
    whose collections of this process's large heap at every run's end add a second)."""
    plugins = ("-p", "no:cacheprovider", "-p", "no:randomly", "-p", "no:unraisableexception")
    return project.runpytest(*plugins, *args)


SUITE = (
    CHAT
    + """
import anthropic
from openai import AsyncOpenAI


def test_chat(note):
    note(ask("What is a cache?"))


def test_stream(note):
    stream = client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Tell a story"}], stream=True
    )
    note([chunk.choices[0].delta.content for chunk in stream if chunk.choices])


def test_embeddings(note):
    answer = client().embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    note([len(item.embedding) for item in answer.data])


async def test_async_clients(note):
    openai_answer = await AsyncOpenAI(base_url=BASE, api_key=API_KEY).responses.create(
        model="gpt-4o-mini", input="What is a tier?"
    )
    claude = anthropic.AsyncAnthropic(base_url=ANTHROPIC_BASE, api_key=API_KEY)
    message = await claude.messages.create(
        model="claude-haiku-4-5", max_tokens=64, messages=[{"role": "user", "content": "Hi"}]
    )
    chunks = []
    async with claude.messages.stream(
        model="claude-haiku-4-5", max_tokens=64, messages=[{"role": "user", "content": "Go"}]
    ) as stream:
        async for text in stream.text_stream:
            chunks.append(text)
    note([openai_answer.output_text, message.content[0].text, chunks])
"""
)


def test_record_then_replay_and_strict_with_the_upstream_gone(
    project: pytest.Pytester, sim: Simulator, tmp_path: Path
) -> None:
    project.makepyfile(test_bot=SUITE)
    run(project, "--llmcache=record").assert_outcomes(passed=4)
    recorded = seen(project, tmp_path)
    calls = sim.count()
    assert calls == 6  # chat, stream, embeddings, responses, messages, messages stream

    sim.stop()
    run(project, "--llmcache=replay").assert_outcomes(passed=4)
    assert seen(project, tmp_path) == recorded
    run(project, "--llmcache=strict").assert_outcomes(passed=4)
    assert seen(project, tmp_path) == recorded
    assert len(recorded["test_stream"]) > 2  # chunk by chunk
    assert len(recorded["test_async_clients"][2]) > 1


def test_off_leaves_every_call_alone(project: pytest.Pytester, sim: Simulator) -> None:
    project.makepyfile(test_bot=SUITE)
    run(project, "--llmcache=off").assert_outcomes(passed=4)
    run(project).assert_outcomes(passed=4)  # no option, no marker: off
    assert sim.count() == 12
    assert not (project.path / "cassettes").exists()


def test_a_streamed_recording_replays_its_chunks(
    project: pytest.Pytester, sim: Simulator, tmp_path: Path
) -> None:
    project.makepyfile(test_bot=SUITE)
    run(project, "--llmcache=record", "-k", "stream").assert_outcomes(passed=1)
    live = seen(project, tmp_path)["test_stream"]
    (line,) = lines(project.path / "cassettes" / "test_bot.jsonl")
    assert line["kind"] == "chunks"
    deltas = [c["choices"][0]["delta"].get("content") for c in line["answer"] if c["choices"]]
    assert deltas == live
    run(project, "--llmcache=strict", "-k", "stream").assert_outcomes(passed=1)
    assert seen(project, tmp_path)["test_stream"] == live
    assert sim.count() == 1


def test_strict_fails_naming_the_nearest_recording_and_the_differing_field(
    project: pytest.Pytester, sim: Simulator
) -> None:
    project.makepyfile(
        test_bot=CHAT
        + """
def test_greets():
    ask("Hello")

def test_other():
    ask("Something else entirely, about databases")
"""
    )
    run(project, "--llmcache=record").assert_outcomes(passed=2)
    (project.path / "test_bot.py").write_text(
        (project.path / "test_bot.py").read_text().replace('ask("Hello")', 'ask("Hi")')
    )
    before = sim.count()
    result = run(project, "--llmcache=strict")
    result.assert_outcomes(passed=1, failed=1)
    assert sim.count() == before  # strict never calls upstream
    output = result.stdout.str()
    assert "llmcache strict mode: no recording of this request in" in output
    assert "test_bot.jsonl" in output
    assert "recorded by test_bot.py::test_greets" in output
    assert "messages[0].content: 'Hi' != 'Hello'" in output
    assert "pytest --llmcache=record test_bot.py::test_greets" in output


def test_a_strict_embeddings_miss_is_explained_per_input(project: pytest.Pytester) -> None:
    source = (
        CHAT
        + """
def test_embed():
    client().embeddings.create(model="text-embedding-3-small", input=["red", "blue"])
"""
    )
    project.makepyfile(test_bot=source)
    run(project, "--llmcache=record").assert_outcomes(passed=1)
    project.makepyfile(test_bot=source.replace('"blue"]', '"green"]'))
    result = run(project, "--llmcache=strict")
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "input: 'green' != 'red'" in output or "input: 'green' != 'blue'" in output
    # "red" was recorded: only "green" missed (counted in the failure report; with CI set,
    # pytest repeats the whole message in its short summary)
    report = output.split("short test summary info")[0]
    assert report.count("differing fields") == 1


def test_a_client_made_at_import_time_is_recorded_too(
    project: pytest.Pytester, sim: Simulator
) -> None:
    project.makepyfile(
        test_bot=CHAT
        + """
MADE_AT_IMPORT = client()

def test_a():
    MADE_AT_IMPORT.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "early"}]
    )
"""
    )
    run(project, "--llmcache=record").assert_outcomes(passed=1)
    sim.stop()
    run(project, "--llmcache=strict").assert_outcomes(passed=1)
    assert sim.count() == 1


def test_strict_fails_even_when_the_code_under_test_swallows_the_error(
    project: pytest.Pytester, sim: Simulator
) -> None:
    project.makepyfile(
        test_bot=CHAT
        + """
def test_swallows():
    try:
        ask("never recorded")
    except Exception:
        pass
"""
    )
    result = run(project, "--llmcache=strict")
    result.assert_outcomes(failed=1)
    assert "the recording holds 0 request(s), none to compare with" in result.stdout.str()
    assert sim.count() == 0


def test_replay_records_what_is_missing(project: pytest.Pytester, sim: Simulator) -> None:
    project.makepyfile(test_bot=CHAT + "\ndef test_a():\n    ask('one')\n")
    run(project, "--llmcache=replay").assert_outcomes(passed=1)
    run(project, "--llmcache=replay").assert_outcomes(passed=1)
    assert sim.count() == 1
    (line,) = lines(project.path / "cassettes" / "test_bot.jsonl")
    assert line["test"] == "test_bot.py::test_a"


def test_recordings_never_hold_keys_headers_or_redacted_values(
    project: pytest.Pytester, sim: Simulator
) -> None:
    project.makeini(
        "[pytest]\nasyncio_mode = auto\nllmcache_redact = customer_id\n"
        "asyncio_default_fixture_loop_scope = function\n"
    )
    project.makepyfile(
        test_bot="""
from conftest_values import *
import anthropic
from openai import OpenAI

def test_secrets():
    client = OpenAI(
        base_url=BASE,
        default_query={"key": "query-secret-value"},
        api_key=API_KEY,
        default_headers={"X-Tenant-Token": "header-secret-value"},
    )
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        extra_body={"customer_id": "param-secret-value"},
        extra_headers={"Authorization": "Bearer bearer-secret-value"},
    )
    claude = anthropic.Anthropic(base_url=ANTHROPIC_BASE, api_key=API_KEY)
    claude.messages.create(model="claude-haiku-4-5", max_tokens=16,
                           messages=[{"role": "user", "content": "hi"}])
"""
    )
    run(project, "--llmcache=record").assert_outcomes(passed=1)
    text = (project.path / "cassettes" / "test_bot.jsonl").read_text()
    for secret in (API_KEY, "query-secret", "header-secret", "param-secret", "bearer-secret"):
        assert secret not in text
    assert "authorization" not in text.lower()
    assert "x-api-key" not in text.lower()
    assert '"customer_id":"[redacted]"' in text
    assert len(text.splitlines()) == 2
    # the redacted values still make the key: a replay finds the recording
    run(project, "--llmcache=strict").assert_outcomes(passed=1)
    assert sim.count() == 2


def test_re_recording_a_test_rewrites_only_its_own_lines(
    project: pytest.Pytester, sim: Simulator
) -> None:
    source = CHAT + "\ndef test_a():\n    ask('first A')\n\ndef test_b():\n    ask('B')\n"
    project.makepyfile(test_bot=source)
    run(project, "--llmcache=record").assert_outcomes(passed=2)
    path = project.path / "cassettes" / "test_bot.jsonl"
    old = {line["test"]: line for line in lines(path)}
    project.makepyfile(test_bot=source.replace("first A", "second A"))
    run(project, "--llmcache=record", "-k", "test_a").assert_outcomes(passed=1)
    new = lines(path)
    assert [line["test"] for line in new].count("test_bot.py::test_a") == 1
    by_test = {line["test"]: line for line in new}
    assert by_test["test_bot.py::test_b"] == old["test_bot.py::test_b"]
    assert by_test["test_bot.py::test_a"]["request"]["params"]["messages"][0]["content"] == (
        "second A"
    )
    run(project, "--llmcache=strict").assert_outcomes(passed=2)


def test_recording_files_are_sorted_stable_and_untouched_by_a_replay(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(test_bot=SUITE)
    run(project, "--llmcache=record").assert_outcomes(passed=4)
    path = project.path / "cassettes" / "test_bot.jsonl"
    raw = path.read_bytes()
    recorded = lines(path)
    assert [(r["key"], r["test"]) for r in recorded] == sorted(
        (r["key"], r["test"]) for r in recorded
    )
    for text, line in zip(raw.decode().splitlines(), recorded, strict=True):
        assert list(line) == ["v", "key", "test", "request", "kind", "model", "usage", "answer"]
        assert line["v"] == 1
        assert json.dumps(line["answer"], sort_keys=True, separators=(",", ":")) in text
    assert {r["kind"] for r in recorded} == {"json", "chunks", "embedding"}
    assert all(r["request"] for r in recorded)  # each with the request it answers
    inputs = [r["request"]["params"]["input"] for r in recorded if r["kind"] == "embedding"]
    assert sorted(inputs) == ["a", "b"]  # embeddings are recorded per input
    run(project, "--llmcache=strict").assert_outcomes(passed=4)
    assert path.read_bytes() == raw


def test_the_marker_scopes_the_mode_per_test_and_per_module(
    project: pytest.Pytester, sim: Simulator
) -> None:
    project.makepyfile(
        test_marked=CHAT
        + """
import pytest

@pytest.mark.llmcache
def test_marked():
    ask("marked")

def test_unmarked():
    ask("unmarked")
""",
        test_module=CHAT
        + """
import pytest
pytestmark = pytest.mark.llmcache(mode="strict")

def test_in_strict_module():
    ask("never recorded")
""",
    )
    result = run(project)
    result.assert_outcomes(passed=2, failed=1)
    assert "llmcache strict mode" in result.stdout.str()
    assert [line["test"] for line in lines(project.path / "cassettes" / "test_marked.jsonl")] == [
        "test_marked.py::test_marked"
    ]
    assert sim.count() == 2  # marked (replay: recorded) and unmarked (off)
    run(project, "test_marked.py").assert_outcomes(passed=2)
    assert sim.count() == 3  # only the unmarked one called again


def test_the_fixture_tells_a_test_its_mode_and_recording(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_bot="""
import pytest

@pytest.mark.llmcache(mode="strict")
def test_strict(llmcache_recording):
    assert llmcache_recording.mode == "strict"
    assert llmcache_recording.store.path.name == "test_bot.jsonl"

def test_off(llmcache_recording):
    assert llmcache_recording is None
"""
    )
    run(project).assert_outcomes(passed=2)


def test_ini_options_choose_the_mode_and_the_directory(
    project: pytest.Pytester, sim: Simulator
) -> None:
    project.makeini(
        "[pytest]\nasyncio_mode = auto\nllmcache_mode = replay\n"
        "llmcache_cassettes = recordings\nasyncio_default_fixture_loop_scope = function\n"
    )
    project.mkpydir("sub")
    (project.path / "sub" / "test_deep.py").write_text(CHAT + "\ndef test_a():\n    ask('deep')\n")
    run(project).assert_outcomes(passed=1)
    assert (project.path / "recordings" / "sub" / "test_deep.jsonl").is_file()


def test_a_bad_mode_names_the_accepted_ones(project: pytest.Pytester) -> None:
    project.makeini("[pytest]\nllmcache_mode = replayy\n")
    project.makepyfile(test_bot="def test_a():\n    pass\n")
    result = run(project)
    assert "llmcache_mode = 'replayy'" in result.stderr.str()
    assert "accepted: record, replay, strict, off" in result.stderr.str()


def _recorded_project(project: pytest.Pytester) -> Path:
    project.makepyfile(test_bot=CHAT + "\ndef test_a():\n    ask('one')\n")
    run(project, "--llmcache=record").assert_outcomes(passed=1)
    return project.path / "cassettes" / "test_bot.jsonl"


def test_a_damaged_line_is_an_error_naming_the_file_and_line(project: pytest.Pytester) -> None:
    path = _recorded_project(project)
    path.write_text(path.read_text() + '{"v": 1, "key": "broken\n')
    result = run(project, "--llmcache=strict")
    result.assert_outcomes(errors=1)
    assert f"{path}:2: not valid JSON" in result.stdout.str()


def test_a_hand_edited_line_missing_a_field_is_an_error(project: pytest.Pytester) -> None:
    path = _recorded_project(project)
    line = json.loads(path.read_text())
    del line["answer"]
    path.write_text(json.dumps(line) + "\n")
    result = run(project, "--llmcache=strict")
    result.assert_outcomes(errors=1)
    assert f"{path}:1: missing field answer" in result.stdout.str()


def test_a_hand_edited_request_that_no_longer_gives_its_key_is_an_error(
    project: pytest.Pytester,
) -> None:
    path = _recorded_project(project)
    line = json.loads(path.read_text())
    line["request"]["params"]["messages"][0]["content"] = "edited"
    path.write_text(json.dumps(line) + "\n")
    result = run(project, "--llmcache=strict")
    result.assert_outcomes(errors=1)
    assert f"{path}:1: the request does not give the key" in result.stdout.str()


def test_a_key_of_an_older_key_version_is_made_again_from_its_request(
    project: pytest.Pytester, sim: Simulator
) -> None:
    path = _recorded_project(project)
    line = json.loads(path.read_text())
    line["key"] = "v0-0123456789abcdef"
    path.write_text(json.dumps(line) + "\n")
    run(project, "--llmcache=strict").assert_outcomes(passed=1)
    assert sim.count() == 1


def test_an_older_format_asks_for_a_re_recording(project: pytest.Pytester) -> None:
    path = _recorded_project(project)
    line = json.loads(path.read_text())
    line["v"] = 0
    path.write_text(json.dumps(line) + "\n")
    result = run(project, "--llmcache=replay")
    result.assert_outcomes(errors=1)
    assert f"{path}:1: recorded in format 0" in result.stdout.str()
    assert "re-record with --llmcache=record" in result.stdout.str()
    run(project, "--llmcache=record").assert_outcomes(passed=1)  # re-recording mends it
    assert lines(path)[0]["v"] == 1


def test_parallel_workers_record_one_file_without_corrupting_it(
    project: pytest.Pytester, sim: Simulator
) -> None:
    tests = "".join(f"\ndef test_{i}():\n    ask('question {i}')\n" for i in range(16))
    project.makepyfile(test_bot=CHAT + tests)
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--llmcache=record")
    result.assert_outcomes(passed=16)
    recorded = lines(project.path / "cassettes" / "test_bot.jsonl")
    assert sorted(line["test"] for line in recorded) == sorted(
        f"test_bot.py::test_{i}" for i in range(16)
    )
    names = {p.name for p in (project.path / "cassettes").iterdir()} - {".llmcache.lock"}
    assert names == {"test_bot.jsonl"}  # no temporary file left behind
    run(project, "--llmcache=strict").assert_outcomes(passed=16)  # every line reads back
    assert sim.count() == 16


def test_the_readme_example_records_then_runs_offline(
    pytester: pytest.Pytester, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- testmode: example -->\s*```python\n(.*?)```", readme, re.S)
    assert found, "the README has no test mode example"
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.mkdir("tests")
    module = pytester.path / "tests" / "test_support_bot.py"
    module.write_text(found.group(1))
    monkeypatch.setenv("OPENAI_BASE_URL", sim.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)

    run(pytester, "--llmcache=record").assert_outcomes(passed=1)
    assert (pytester.path / "tests" / "cassettes" / "test_support_bot.jsonl").is_file()
    sim.stop()
    monkeypatch.setenv("OPENAI_API_KEY", "any value")
    run(pytester, "--llmcache=strict").assert_outcomes(passed=1)

    module.write_text(module.read_text().replace("the support ticket", "the ticket"))
    result = run(pytester, "--llmcache=strict")
    result.assert_outcomes(failed=1)
    assert (
        "messages[0].content: 'Summarise the ticket in one line.' != "
        "'Summarise the support ticket in one line.'"
    ) in result.stdout.str()
