"""The ``"intent"`` TTL policy: cache by what the last user message asks (SPEC rules)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmcache import NEVER, CacheRequest, IntentPolicy
from llmcache._rules.ttl import LONG, MEDIUM, SHORT
from llmcache.tools.inventory import open_store
from llmcache.tools.simulator import Simulator

MODEL = "gpt-4o-mini"


def chat_request(*messages: tuple[str, str]) -> CacheRequest:
    params = {"model": MODEL, "messages": [{"role": r, "content": c} for r, c in messages]}
    return CacheRequest("chat.completions", params)


def ttl_of(text: str, policy: IntentPolicy | None = None) -> Any:
    return (policy or IntentPolicy()).ttl(chat_request(("user", text)))


# -- the default lists and their order ------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("What is the current price of gold?", NEVER),
        ("Who won the match today?", NEVER),
        ("What time is it now", NEVER),
        ("Show me the latest release notes", NEVER),
        ("Give me a definition of entropy", LONG),
        ("Explain how TCP handshakes work", LONG),
        ("what is a monad", LONG),
        ("Write a haiku about autumn", MEDIUM),
        ("Review this code for bugs", MEDIUM),
        ("A function that sorts a list, please", MEDIUM),
        ("Hello there, how are you?", SHORT),
    ],
)
def test_default_lists_classify_the_last_user_message(prompt: str, expected: Any) -> None:
    assert ttl_of(prompt) == expected


def test_the_default_ttls_are_a_day_an_hour_and_five_minutes() -> None:
    assert (LONG, MEDIUM, SHORT) == (86400, 3600, 300)


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("Explain the latest changes to this function", NEVER),  # never > long > medium
        ("Write code for today's report", NEVER),  # never > medium
        ("Explain how to write a function", LONG),  # long > medium
        ("What is the code for a sort function", LONG),
    ],
)
def test_never_wins_then_long_then_medium(prompt: str, expected: Any) -> None:
    assert ttl_of(prompt) == expected


# -- whole words, phrases, case ---------------------------------------------------------------


@pytest.mark.parametrize(
    "prompt",
    [
        "I know the answer",  # 'now' inside 'know'
        "It is nowhere to be found",
        "Currently unsure",  # 'current' inside 'currently'
        "todays_total is wrong",
        "The latestversion flag",
    ],
)
def test_words_inside_other_words_do_not_match(prompt: str) -> None:
    assert ttl_of(prompt) == SHORT


@pytest.mark.parametrize(
    "prompt",
    ["WHAT IS this", "What   is\tthis", "so, what is: this", "tell me: What Is it?"],
)
def test_phrases_match_case_insensitively_across_any_whitespace(prompt: str) -> None:
    assert ttl_of(prompt) == LONG


def test_a_phrase_must_match_whole_words_at_both_ends() -> None:
    assert ttl_of("what isotopes exist?") == SHORT
    assert ttl_of("somewhat is fine") == SHORT


@pytest.mark.parametrize("prompt", ["NOW", "Now.", "(now)", "right-now"])
def test_single_words_match_in_any_case_and_next_to_punctuation(prompt: str) -> None:
    assert ttl_of(prompt) is NEVER


# -- which message is read -------------------------------------------------------------------


def test_only_the_last_user_message_is_read() -> None:
    request = chat_request(
        ("system", "Always explain the latest news now."),
        ("user", "What is happening today?"),
        ("assistant", "Explain what?"),
        ("user", "hello"),
    )
    assert IntentPolicy().ttl(request) == SHORT


def test_text_parts_of_a_structured_message_are_read() -> None:
    parts = [{"type": "text", "text": "Please"}, {"type": "text", "text": "explain monads"}]
    request = CacheRequest(
        "chat.completions", {"model": MODEL, "messages": [{"role": "user", "content": parts}]}
    )
    assert IntentPolicy().ttl(request) == LONG


def test_a_completions_prompt_is_read() -> None:
    request = CacheRequest("completions", {"model": MODEL, "prompt": "the latest score"})
    assert IntentPolicy().ttl(request) is NEVER


# -- constructor lists and default ------------------------------------------------------------


def test_a_given_list_replaces_the_default_list_of_its_class() -> None:
    policy = IntentPolicy(never=["breaking"])

    assert ttl_of("breaking news", policy) is NEVER
    assert ttl_of("what happens now", policy) == SHORT  # 'now' is no longer in the list
    assert ttl_of("explain it now", policy) == LONG  # the other classes keep their defaults


def test_long_and_medium_lists_replace_theirs_too() -> None:
    policy = IntentPolicy(long=["history of"], medium=["refactor"])

    assert ttl_of("the history of Rome", policy) == LONG
    assert ttl_of("explain Rome", policy) == SHORT
    assert ttl_of("refactor this", policy) == MEDIUM
    assert ttl_of("write this", policy) == SHORT


def test_an_empty_list_disables_its_class() -> None:
    assert ttl_of("what is the time now", IntentPolicy(never=[])) == LONG


def test_default_is_the_ttl_when_nothing_matches() -> None:
    assert ttl_of("hello", IntentPolicy(default=60)) == 60
    assert ttl_of("hello", IntentPolicy(default=None)) is None  # None: keep forever
    assert ttl_of("explain", IntentPolicy(default=60)) == LONG


def test_a_single_string_is_refused_for_a_list() -> None:
    with pytest.raises(TypeError, match="never"):
        IntentPolicy(never="now")  # type: ignore[arg-type]


# -- on a client ------------------------------------------------------------------------------


def ask(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], **extra}


def test_intent_by_name_bypasses_a_time_sensitive_prompt(make_client: Any, sim: Simulator) -> None:
    client = make_client(ttl_policy="intent")
    first = client.chat.completions.create(**ask("What is the weather now?"))
    second = client.chat.completions.create(**ask("What is the weather now?"))

    assert sim.count() == 2
    assert (first.cache_hit, second.cache_hit) == (False, False)
    stats = client.stats()
    assert (stats.bypasses, stats.hits, stats.misses, stats.requests) == (2, 0, 0, 2)


def test_intent_by_name_caches_other_prompts(make_client: Any, sim: Simulator) -> None:
    client = make_client(ttl_policy="intent")
    client.chat.completions.create(**ask("Explain recursion"))
    again = client.chat.completions.create(**ask("Explain recursion"))

    assert again.cache_hit is True
    assert sim.count() == 1


@pytest.mark.parametrize(
    ("prompt", "ttl"),
    [("Explain recursion", LONG), ("Write a parser", MEDIUM), ("Hi!", SHORT)],
)
def test_intent_ttls_reach_the_store(
    make_client: Any, tmp_path: Path, prompt: str, ttl: float
) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    client = make_client(ttl_policy="intent", tiers=[url])
    client.chat.completions.create(**ask(prompt))

    store = open_store(url)
    try:
        [entry] = list(store.backend.scan())
    finally:
        store.backend.close()
    assert entry.expires is not None
    assert entry.created is not None
    assert entry.expires - entry.created == pytest.approx(ttl, abs=5)


@pytest.mark.parametrize("option", [{"cache_control": "max-age=60"}, {"cache_ttl": 60}])
def test_an_explicit_per_call_option_overrides_never(
    make_client: Any, sim: Simulator, option: dict[str, Any]
) -> None:
    client = make_client(ttl_policy="intent")
    client.chat.completions.create(**ask("the latest news", **option))
    again = client.chat.completions.create(**ask("the latest news", **option))

    assert again.cache_hit is True
    assert sim.count() == 1


def test_a_policy_object_with_its_own_lists_can_be_given(make_client: Any, sim: Simulator) -> None:
    client = make_client(ttl_policy=IntentPolicy(never=["stock"]))
    client.chat.completions.create(**ask("stock price of ACME"))
    client.chat.completions.create(**ask("stock price of ACME"))
    client.chat.completions.create(**ask("what is happening now"))
    now = client.chat.completions.create(**ask("what is happening now"))

    assert sim.count() == 3
    assert now.cache_hit is True
