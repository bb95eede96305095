"""The request every benchmark sends: a typical three-message chat with a ~1.4 KB answer.

The simulator answers ``[<digest>] Simulated reply to: <the first 12 words of the last user
message>``, so the user message is made of 12 long words: the answer's content is then about
1.1 KB, and the whole JSON response about 1.4 KB, as a short real chat answer would be.
"""

from __future__ import annotations

import random
from typing import Any

__all__ = [
    "MODEL",
    "SYSTEM_PROMPT",
    "async_openai_client",
    "chat_request",
    "openai_client",
    "prose",
]

MODEL = "gpt-4o-mini"

_SYSTEM = (
    "You are a careful assistant for an engineering team. Answer in plain English, in short "
    "paragraphs, and say so when you are not sure. Prefer concrete steps over general advice. "
    "When code is needed, give complete, runnable examples in Python 3.11 with type hints, and "
    "explain what each part does and why. Never invent APIs, options or version numbers. When "
    "a question is ambiguous, state the reading you chose before answering it. Keep answers "
    "under three hundred words unless the user asks for more detail. Cite the official "
    "documentation by its title when you rely on it, and mention known pitfalls and how to "
    "avoid them. Use metric units. Do not repeat the question back to the user."
)
SYSTEM_PROMPT = (_SYSTEM + " " * 600)[:600]

_TOPICS = (
    "cache-invalidation",
    "consistent-hashing",
    "write-through-policies",
    "eviction-heuristics",
    "time-to-live-budgets",
    "request-coalescing",
    "serialisation-formats",
    "compression-thresholds",
    "circuit-breakers",
    "connection-pooling",
    "namespace-isolation",
    "observability-hooks",
)
_WORD = 74  # characters per word of the user message: sets the answer's size
VOCABULARY = tuple(
    " ".join(
        (
            "the a of to in for with on by from about across under over between after before",
            "while cache entry answer request server client store tier shard replica index",
            "table page latency budget memory disk network queue thread process worker batch",
            "stream token model prompt reply user system policy error retry timeout window",
            "bucket counter metric trace fast slow stale fresh shared local remote hot cold",
            "large small careful simple robust",
        )
    ).split(" ")
)


def prose(seed: str, length: int) -> str:
    """Return ``length`` characters of English-like words, the same for the same seed."""
    rng = random.Random(seed)
    words: list[str] = []
    size = 0
    while size < length:
        words.append(rng.choice(VOCABULARY))
        size += len(words[-1]) + 1
    return " ".join(words)[:length]


def _word(topic: str, tag: str) -> str:
    stem = f"{topic}-{tag}-" if tag else f"{topic}-"
    return (stem + prose(stem, _WORD).replace(" ", "-"))[:_WORD]


def chat_request(tag: str = "") -> dict[str, Any]:
    """Return ``create`` arguments of the typical chat; a different ``tag``, another request.

    Three messages: a 600-character system prompt, the assistant's greeting and the user's
    question, whose twelve long words the simulator echoes into a ~1.4 KB response.
    """
    question = " ".join(_word(topic, tag) for topic in _TOPICS)
    return {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "assistant", "content": "Hello! What would you like to know?"},
            {"role": "user", "content": question},
        ],
    }


def openai_client(base_url: str) -> Any:
    """Return a sync OpenAI client for the simulator (no retries)."""
    from openai import OpenAI

    return OpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)


def async_openai_client(base_url: str) -> Any:
    """Return an AsyncOpenAI client for the simulator; build one per event loop."""
    from openai import AsyncOpenAI

    return AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
