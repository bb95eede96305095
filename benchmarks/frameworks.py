"""A repeated framework call, cached against uncached: ``nox -s <framework> -- bench``.

Each framework's session runs ``python -m benchmarks.frameworks <framework>`` in its own
virtualenv. The call is the one its README recipe makes (instructor's extraction, a
pydantic-ai agent run, ``ChatOpenAI.invoke``, an openai-agents ``Runner.run_sync``,
llama-index's ``complete``), against the simulator in a child process answering at once:
uncached, every call goes to it; cached, the client's HTTP cache answers from a memory tier.
Blocks of the two sides alternate; the figures are medians and 90th percentiles of single
calls. The row is merged into ``frameworks.json`` and the "Frameworks" section of
``RESULTS.md`` is rewritten from it, so one session's run never drops another's row.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import llmcache

from .timing import percentile
from .upstream import Upstream

HERE = Path(__file__).resolve().parent
MODEL = "gpt-4o-mini"
KEY = "sk-bench"
QUESTION = "Ada Lovelace was born in 1815 in London. Who is she?"
SECTION = "## Frameworks"

Call = Callable[[], Any]


def _person() -> Any:
    from pydantic import BaseModel

    class Person(BaseModel):
        name: str
        born: int

    return Person


def _instructor(base_url: str, http: Any) -> Call:
    import instructor
    from openai import OpenAI

    sdk = OpenAI(api_key=KEY, base_url=base_url, http_client=http, max_retries=0)
    client, person = instructor.from_openai(sdk), _person()
    messages: Any = [{"role": "user", "content": QUESTION}]
    return lambda: client.chat.completions.create(
        model=MODEL, response_model=person, messages=messages
    )


def _pydantic_ai(base_url: str, http: Any) -> Call:
    from openai import AsyncOpenAI
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    sdk = AsyncOpenAI(api_key=KEY, base_url=base_url, http_client=http, max_retries=0)
    model = OpenAIChatModel(MODEL, provider=OpenAIProvider(openai_client=sdk))
    agent = Agent(model, output_type=_person(), model_settings={"max_retries": 0})
    return lambda: agent.run_sync(QUESTION)


def _langchain(base_url: str, http: Any) -> Call:
    from langchain_openai import ChatOpenAI
    from pydantic import SecretStr

    llm = ChatOpenAI(
        model=MODEL, api_key=SecretStr(KEY), base_url=base_url, http_client=http, max_retries=0
    )
    return lambda: llm.invoke(QUESTION)


def _openai_agents(base_url: str, http: Any) -> Call:
    from agents import Agent, OpenAIResponsesModel, Runner, set_tracing_disabled
    from openai import AsyncOpenAI

    set_tracing_disabled(True)
    sdk = AsyncOpenAI(api_key=KEY, base_url=base_url, http_client=http, max_retries=0)
    agent = Agent(name="Assistant", model=OpenAIResponsesModel(MODEL, openai_client=sdk))
    return lambda: Runner.run_sync(agent, QUESTION)


def _llama_index(base_url: str, http: Any) -> Call:
    from llama_index.llms.openai import OpenAI

    llm = OpenAI(model=MODEL, api_key=KEY, api_base=base_url, http_client=http, max_retries=0)
    return lambda: llm.complete(QUESTION)


# name -> (the call, what it is, whether its SDK client is async, the packages to report)
FRAMEWORKS: dict[str, tuple[Callable[[str, Any], Call], str, bool, tuple[str, ...]]] = {
    "instructor": (_instructor, "`chat.completions.create(response_model=...)`", False,
                   ("instructor",)),
    "pydantic_ai": (_pydantic_ai, "`Agent.run_sync`, structured output", True,
                    ("pydantic-ai-slim",)),
    "langchain": (_langchain, "`ChatOpenAI.invoke`", False, ("langchain-openai",)),
    "openai_agents": (_openai_agents, "`Runner.run_sync`", True, ("openai-agents",)),
    "llama_index": (_llama_index, "`OpenAI.complete`", False, ("llama-index-llms-openai",)),
}  # fmt: skip


def _time(call: Call, count: int) -> list[float]:
    """Return ``count`` single-call latencies of ``call``, in milliseconds."""
    latencies = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - start) * 1000)
    return latencies


def measure(name: str, rounds: int, block: int) -> dict[str, Any]:
    """Time the framework's call uncached and cached; return its row."""
    build, what, is_async, packages = FRAMEWORKS[name]
    make_http = llmcache.async_http_client if is_async else llmcache.http_client
    with Upstream(cpu=None) as upstream:
        plain = build(upstream.base_url, None)
        http = make_http(tiers=["memory://"])
        cached = build(upstream.base_url, http)
        for call in (plain, cached, plain, cached):  # warm both paths; stores the entry
            call()
        uncached_ms: list[float] = []
        cached_ms: list[float] = []
        before_hits = upstream.count()
        sent = 0
        for _ in range(rounds):
            sent -= upstream.count()
            uncached_ms += _time(plain, block)
            sent += upstream.count()
            cached_ms += _time(cached, block)
        upstream_during_hits = upstream.count() - before_hits - sent
    versions = {p: importlib.metadata.version(p) for p in (*packages, "openai")}
    uncached, hit = statistics.median(uncached_ms), statistics.median(cached_ms)
    return {
        "framework": name,
        "call": what,
        "versions": versions,
        "uncached_ms": round(uncached, 3),
        "uncached_p90_ms": round(percentile(uncached_ms, 0.9), 3),
        "cached_ms": round(hit, 3),
        "cached_p90_ms": round(percentile(cached_ms, 0.9), 3),
        "speedup": round(uncached / hit, 2),
        "upstream_requests_per_uncached_call": round(sent / (rounds * block), 2),
        "upstream_requests_during_hits": upstream_during_hits,
        "calls": rounds * block,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def table(rows: dict[str, dict[str, Any]]) -> str:
    """Return the "Frameworks" section of ``RESULTS.md``."""
    lines = [
        SECTION,
        "",
        "A repeated framework call through `llmcache.http_client()` / `async_http_client()` "
        "(memory tier), cached against uncached, on the simulator answering at once from a "
        "child process: the uncached figure is the framework's own floor on loopback, so "
        "against a real API (hundreds of milliseconds per call) a hit saves far more. "
        "Reproduce: `nox -s <framework> -- bench`.",
        "",
        "| framework | call | versions | uncached median ms | p90 | cached median ms | p90 "
        "| speedup | upstream requests per uncached call | upstream requests during hits "
        "| calls |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in sorted(rows):
        row = rows[name]
        versions = ", ".join(f"{p} {v}" for p, v in row["versions"].items())
        lines.append(
            f"| {name} | {row['call']} | {versions} | {row['uncached_ms']:.2f} "
            f"| {row['uncached_p90_ms']:.2f} | {row['cached_ms']:.2f} "
            f"| {row['cached_p90_ms']:.2f} | **{row['speedup']:.1f}x** "
            f"| {row['upstream_requests_per_uncached_call']} "
            f"| {row['upstream_requests_during_hits']} | {row['calls']} |"
        )
    return "\n".join(lines) + "\n"


def write(rows: dict[str, dict[str, Any]], results: Path) -> None:
    """Put the section at the end of ``results``, replacing the one already there."""
    text = results.read_text(encoding="utf-8") if results.exists() else ""
    start = text.find(SECTION)
    if start >= 0:
        following = text.find("\n## ", start + len(SECTION))
        text = text[:start] + (text[following + 1 :] if following >= 0 else "")
    results.write_text(text.rstrip("\n") + "\n\n" + table(rows), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Measure one framework, merge its row, rewrite the section; return 0."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.frameworks")
    parser.add_argument("framework", choices=sorted(FRAMEWORKS))
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--block", type=int, default=20)
    parser.add_argument("--data", type=Path, default=HERE / "frameworks.json")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    row = measure(args.framework, args.rounds, args.block)
    rows = json.loads(args.data.read_text()) if args.data.exists() else {}
    rows[args.framework] = row
    args.data.write_text(json.dumps(rows, indent=2, sort_keys=True) + "\n")
    write(rows, args.results)
    print(json.dumps(row, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
