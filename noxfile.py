"""Framework tests, each in a virtualenv of its own where that framework's pins resolve.

``nox`` runs every session; ``nox -s langchain`` one; ``nox -s langchain -- bench`` times the
framework's repeated call, cached and uncached, instead of testing (``benchmarks/frameworks.py``).
Virtualenvs live outside the clone (``LLMCACHE_NOX_ENVDIR``, default ``~/.cache/llmcache/nox``)
and are reused, so a warm run only installs what changed.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True
nox.options.envdir = os.environ.get(
    "LLMCACHE_NOX_ENVDIR", str(Path.home() / ".cache" / "llmcache" / "nox")
)

# What every session needs to run the project's tests.
TEST_DEPS = ["pytest>=8", "pytest-asyncio>=0.24", "pytest-timeout>=2.3"]


def run_framework(session: nox.Session, name: str, *packages: str, extras: str = "sql") -> None:
    """Install llmcache and the latest release of ``packages``, then test or benchmark ``name``.

    ``--upgrade-package`` keeps a reused virtualenv on the framework's newest release instead
    of the one it was created with; uv answers from its cache when nothing changed.
    """
    upgrades = [arg for package in packages for arg in ("--upgrade-package", _bare(package))]
    session.install(f"-e.[{extras}]", *TEST_DEPS, *packages, *upgrades)
    session.run("python", "-c", _VERSIONS)
    if session.posargs[:1] == ["bench"]:
        session.run("python", "-m", "benchmarks.frameworks", name, *session.posargs[1:])
        return
    tests = [f"tests/frameworks/test_{name}.py"]
    session.run("python", "-m", "pytest", *tests, "-p", "no:cacheprovider", *session.posargs)


def _bare(requirement: str) -> str:
    """Return the distribution name of a requirement such as ``pydantic-ai-slim[openai]``."""
    return requirement.split("[")[0].split(">")[0].split("=")[0].split("<")[0]


# Print what the virtualenv resolved: which SDKs and which HTTP library the framework runs on.
_VERSIONS = (
    "import importlib.metadata as m; "
    "print('resolved:', *sorted(f'{d.name} {d.version}' for d in m.distributions() "
    "if d.name.lower() in {'openai', 'anthropic', 'httpx', 'httpx2'}))"
)


@nox.session
def instructor(session: nox.Session) -> None:
    """instructor: ``from_openai`` sync and async with a Pydantic response model."""
    run_framework(session, "instructor", "instructor")


@nox.session
def pydantic_ai(session: nox.Session) -> None:
    """pydantic-ai: an Agent on OpenAIChatModel with retries, a tool and structured output."""
    run_framework(session, "pydantic_ai", "pydantic-ai-slim[openai]")


@nox.session
def langchain(session: nox.Session) -> None:
    """langchain-openai and langchain-anthropic chat models, and LangChain's LLM cache."""
    packages = ["langchain-core", "langchain-openai", "langchain-anthropic", "langchain-tests"]
    run_framework(session, "langchain", *packages, extras="redis,sql,memcached,langchain,serve")
    if session.posargs[:1] != ["bench"]:
        cache_tests = "tests/frameworks/test_langchain_cache.py"
        session.run("python", "-m", "pytest", cache_tests, "-p", "no:cacheprovider")


@nox.session
def openai_agents(session: nox.Session) -> None:
    """openai-agents: Runner.run and run_streamed, with retry settings."""
    run_framework(session, "openai_agents", "openai-agents")


@nox.session
def llama_index(session: nox.Session) -> None:
    """llama-index-llms-openai: complete, chat and their streams."""
    run_framework(session, "llama_index", "llama-index-llms-openai")


@nox.session
def testmode(session: nox.Session) -> None:
    """The pytest plugin's test mode: a LangChain model and a pydantic-ai agent recorded,
    then replayed with the upstream gone."""
    packages = ["langchain-openai", "langchain-anthropic", "pydantic-ai-slim[openai]"]
    run_framework(session, "testmode", *packages, extras="pytest")
