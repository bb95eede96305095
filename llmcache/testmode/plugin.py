"""The pytest plugin: record, replay or strictly replay every LLM call a test makes.

Enabled by the ``pytest11`` entry point (``pip install 'llmcache[pytest]'``); it does
nothing until a mode is chosen::

    pytest --llmcache=record     # call the APIs, write what they answered
    pytest --llmcache=replay     # answer from the recordings, record what is missing
    pytest --llmcache=strict     # answer from the recordings; a request without one fails
    pytest --llmcache=off        # leave every call alone

Choosing: ``--llmcache`` on the command line, else the test's ``llmcache`` marker
(``@pytest.mark.llmcache(mode="strict")``, or ``pytestmark`` for a module), else the ini
option ``llmcache_mode``, else ``replay`` for a marked test and ``off`` for the others.
Recordings are one file per test module: ``cassettes/<module>.jsonl`` beside the module,
or under the ini option ``llmcache_cassettes`` (relative to the root directory), mirroring
the tests' folders.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmcache.testmode.lines import RecordingError
from llmcache.testmode.session import Recording, install, uninstall
from llmcache.testmode.store import MODES, flush_all, open_recording

__all__ = [
    "pytest_addoption",
    "pytest_configure",
    "pytest_runtest_makereport",
    "pytest_runtest_setup",
    "pytest_runtest_teardown",
    "recording_path",
]

_RECORDING = pytest.StashKey[Recording]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--llmcache`` and the ini options ``llmcache_mode``, ``llmcache_cassettes`` and
    ``llmcache_redact``."""
    group = parser.getgroup("llmcache", "LLM calls recorded and replayed by llmcache")
    group.addoption(
        "--llmcache",
        dest="llmcache_mode",
        choices=MODES,
        default=None,
        help="record, replay or strict: answer LLM API calls from recordings; off: do not.",
    )
    parser.addini("llmcache_mode", "Default mode: record, replay, strict or off.", default="")
    parser.addini(
        "llmcache_cassettes",
        "Directory of the recordings, relative to the root directory "
        "(default: cassettes/ beside each test module).",
        default="",
    )
    parser.addini(
        "llmcache_redact",
        "Request arguments and URL query parameters whose values are never written "
        "(headers never are).",
        type="args",
        default=[],
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker and check the ini mode."""
    config.addinivalue_line(
        "markers",
        "llmcache(mode=None): answer this test's LLM API calls from its module's recording "
        "(mode: record, replay, strict or off; default: the configured mode, else replay).",
    )
    mode = config.getini("llmcache_mode")
    if mode and mode not in MODES:
        raise pytest.UsageError(
            f"llmcache_mode = {mode!r} in the ini file; accepted: {', '.join(MODES)}"
        )


def mode_of(item: pytest.Item) -> str:
    """Return the mode a test runs in (see the module docstring for the order)."""
    chosen: str | None = item.config.getoption("llmcache_mode")
    if chosen:
        return chosen
    marker = item.get_closest_marker("llmcache")
    if marker is not None:
        mode = marker.kwargs.get("mode", marker.args[0] if marker.args else None)
        if mode is not None:
            if mode not in MODES:
                raise pytest.UsageError(
                    f"{item.nodeid}: llmcache(mode={mode!r}); accepted: {', '.join(MODES)}"
                )
            return str(mode)
    configured: str = item.config.getini("llmcache_mode")
    if configured:
        return configured
    return "replay" if marker is not None else "off"


def recording_path(item: pytest.Item) -> Path:
    """Return the recording file of a test's module."""
    module = Path(item.path)
    directory: str = item.config.getini("llmcache_cassettes")
    if not directory:
        return module.parent / "cassettes" / f"{module.stem}.jsonl"
    root = Path(item.config.rootpath)
    try:
        relative = module.relative_to(root)
    except ValueError:
        relative = Path(module.name)
    return (root / directory / relative).with_suffix(".jsonl")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Route the test's LLM API calls through its module's recording, fixtures included."""
    mode = mode_of(item)
    if mode == "off":
        return
    try:
        store = open_recording(recording_path(item), rewriting=mode == "record")
    except RecordingError as exc:
        pytest.fail(f"llmcache: {exc}", pytrace=False)
    if store.outdated:
        warnings.warn(
            f"llmcache: dropped {store.outdated} line(s) of an older recording format "
            f"from {store.path}; re-record the tests they belonged to",
            stacklevel=1,
        )
        store.outdated = 0
    redact = frozenset(item.config.getini("llmcache_redact"))
    recording = item.stash[_RECORDING] = Recording(store, mode, item.nodeid, redact)
    install(recording)


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    """After the test's fixtures are torn down, restore the transports and write what the
    test recorded."""
    yield
    recording = item.stash.get(_RECORDING, None)
    if recording is not None:
        uninstall()
        recording.store.flush()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Fail a strict test that made a request without a recording, with the explanation
    (whatever the code under test did with the error its client raised)."""
    outcome: Any = yield
    recording = item.stash.get(_RECORDING, None)
    if recording is None or not recording.misses:
        return
    report = outcome.get_result()
    messages = "\n\n".join(recording.misses)
    recording.misses.clear()
    report.outcome = "failed"
    report.longrepr = messages


@pytest.fixture
def llmcache_recording(request: pytest.FixtureRequest) -> Recording | None:
    """The running test's recording (its ``mode``, ``store``), or ``None`` when off."""
    recording: Recording | None = request.node.stash.get(_RECORDING, None)
    return recording


def pytest_sessionfinish() -> None:
    """Give the transports back, should a test have been interrupted, and close the
    recordings (a later session in this process reads them again)."""
    uninstall()
    flush_all()
