"""Properties, checked by hypothesis over generated inputs.

- Keys: equal requests get equal keys whatever the order of their dicts; requests that
  differ in any argument that is not on the deny-list get different keys, and so do
  different endpoints, providers and scopes; deny-listed arguments and the SDKs'
  ``NOT_GIVEN`` never change a key.
- Codec: every entry round-trips, signed or not, compressed or not; so does every SDK
  response type the cache stores (chat completions, completions, embeddings, responses,
  Anthropic messages), rebuilt into an equal SDK object.
- ``cache_control``: every valid directive string parses to what it says; every invalid
  one raises ``ValueError`` naming the culprit; no string raises anything else.
"""

from __future__ import annotations

import json
import math
import random
import string
from collections.abc import Callable
from typing import Any

import pytest
from anthropic.types import Message
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from openai import NOT_GIVEN
from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from llmcache._rules.keys import (
    DENIED_PARAMS,
    RequestKeyStrategy,
    UncacheableRequest,
    has_non_finite,
    null_free,
    params_digest,
)
from llmcache._rules.options import Directives, parse_cache_control
from llmcache._rules.request import CacheOptions, CacheRequest
from llmcache._tiers.codec import Codec, Entry
from llmcache.providers.anthropic import ANTHROPIC
from llmcache.providers.base import EndpointAdapter, dump
from llmcache.providers.openai import OPENAI

SETTINGS = settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- generated JSON --------------------------------------------------------------------------------

TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=16)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
NAMES = st.text(string.ascii_lowercase + "_", min_size=1, max_size=14).filter(
    lambda name: name not in DENIED_PARAMS and not name.startswith("cache_")
)
MESSAGES = st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["system", "user"]), "content": TEXT}),
    min_size=1,
    max_size=3,
)
PARAMS = st.builds(
    lambda model, messages, extra: {"model": model, "messages": messages, **extra},
    st.sampled_from(["gpt-4o-mini", "gpt-4.1", "local-model"]),
    MESSAGES,
    st.dictionaries(NAMES.filter(lambda n: n not in ("model", "messages")), JSON, max_size=4),
)


def _key(
    params: dict[str, Any],
    *,
    endpoint: Any = "chat.completions",
    provider: str = "http://127.0.0.1:1/v1||",
    scope: str | None = None,
) -> str:
    request = CacheRequest(endpoint, params, CacheOptions(key=scope), "default", provider)
    return RequestKeyStrategy().key(request)


def _json(value: Any) -> str:
    """What the upstream receives for ``value``: tells two argument values apart."""
    return json.dumps(value, sort_keys=True)


def _shuffled(value: Any, rng: random.Random) -> Any:
    """``value`` with every dict rebuilt in another key order."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


# -- keys ------------------------------------------------------------------------------------------


@SETTINGS
@given(params=PARAMS, rng=st.randoms(use_true_random=False))
def test_equal_requests_get_equal_keys_whatever_the_dict_order(
    params: dict[str, Any], rng: random.Random
) -> None:
    assert _key(_shuffled(params, rng)) == _key(params)


@SETTINGS
@given(params=PARAMS, data=st.data())
def test_requests_that_differ_in_any_kept_argument_get_different_keys(
    params: dict[str, Any], data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(sorted(params)))
    value = data.draw(JSON.filter(lambda v: _json(v) != _json(params[name])))
    assert _key({**params, name: value}) != _key(params)


@SETTINGS
@given(params=PARAMS, name=NAMES, value=JSON)
def test_adding_or_removing_a_kept_argument_changes_the_key(
    params: dict[str, Any], name: str, value: Any
) -> None:
    assume(name not in params)
    assert _key({**params, name: value}) != _key(params)


@SETTINGS
@given(
    params=PARAMS,
    denied=st.dictionaries(st.sampled_from(sorted(DENIED_PARAMS)), JSON, min_size=1),
    unset=st.lists(NAMES, max_size=3),
)
def test_denied_arguments_and_not_given_never_change_the_key(
    params: dict[str, Any], denied: dict[str, Any], unset: list[str]
) -> None:
    absent = {name: NOT_GIVEN for name in unset if name not in params}
    assert _key({**params, **denied, **absent}) == _key(params)


@SETTINGS
@given(params=PARAMS, scopes=st.lists(TEXT.filter(bool), min_size=2, max_size=2, unique=True))
def test_endpoints_providers_and_scopes_never_share_keys(
    params: dict[str, Any], scopes: list[str]
) -> None:
    keys = {
        _key(params),
        _key(params, endpoint="responses"),
        _key(params, provider="https://api.example.com/v1||"),
        _key(params, provider="http://127.0.0.1:1/v1|org-a|"),
        _key(params, scope=scopes[0]),
        _key(params, scope=scopes[1]),
    }
    assert len(keys) == 6


@SETTINGS
@given(value=st.recursive(SCALARS | st.integers() | st.text(), lambda inner: st.lists(inner)))
def test_any_argument_gets_a_key_or_makes_the_request_uncacheable(value: Any) -> None:
    try:
        key = _key({"model": "m", "messages": [], "anything": value})
    except UncacheableRequest:
        return
    assert key.startswith("v1-")


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_never_share_a_key_with_null(number: float) -> None:
    """Python sends NaN and infinities as such (or refuses to); they are not ``null``."""
    try:
        key = _key({"model": "m", "messages": [], "temperature": number})
    except UncacheableRequest:
        return
    assert key != _key({"model": "m", "messages": [], "temperature": None})
    others = {math.nan, math.inf, -math.inf} - {number}
    for other in others:
        assert key != _key({"model": "m", "messages": [], "temperature": other})


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize(
    "where",
    [
        lambda x: {"tools": [{"type": "function", "function": {"parameters": {"minimum": x}}}]},
        lambda x: {"logit_bias": {"50256": x}},
        lambda x: {"messages": [{"role": "user", "content": "hi", "weights": (1.0, x)}]},
    ],
    ids=["in a tool schema", "in a dict", "in a tuple in a message"],
)
def test_a_deep_non_finite_number_never_shares_a_key_with_null(
    number: float, where: Callable[[Any], dict[str, Any]]
) -> None:
    """The check for NaN walks the values: one deep inside lists and dicts is found too."""
    try:
        key = _key({"model": "m", **where(number)})
    except UncacheableRequest:
        return
    assert key != _key({"model": "m", **where(None)})
    assert key == _key({"model": "m", **where(number)})


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf, None])
@given(params=st.dictionaries(NAMES, JSON, max_size=4))
@SETTINGS
def test_the_digest_without_the_nan_check_is_the_key_unless_a_float_is_not_finite(
    params: dict[str, Any], number: float | None
) -> None:
    """The quick path's digest skips the NaN walk: it is the key of every request without
    a non-finite float, and ``has_non_finite`` tells the others; ``null_free`` is never
    true of a request whose JSON holds null."""
    params = {"model": "m", **params, "deep": [{"x": number}]}
    try:
        exact = params_digest("chat.completions", "openai", params)
    except UncacheableRequest:
        return
    quick = params_digest("chat.completions", "openai", params, nan_check=False)
    assert has_non_finite(params) == (number is not None)
    assert (quick == exact) == (number is None)
    if number is not None:  # the quick digest is the one of null in its place
        params["deep"] = [{"x": None}]
        assert quick == params_digest("chat.completions", "openai", params)
    assert not null_free(params)
    del params["deep"]
    assert null_free(params) == (not _holds_null(params))


def _holds_null(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_holds_null(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_null(v) for v in value)
    return value is None


# -- the codec -------------------------------------------------------------------------------------

PAYLOADS = st.recursive(
    SCALARS | st.binary(max_size=32),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(TEXT, inner, max_size=5),
    max_leaves=30,
)
DICTS = st.dictionaries(TEXT, PAYLOADS, max_size=5)
KIND_AND_PAYLOAD = st.one_of(
    st.tuples(st.just("response"), DICTS),
    st.tuples(st.just("embedding"), DICTS),
    st.tuples(st.just("chunks"), st.lists(DICTS, max_size=4)),
)
ENTRIES = st.builds(
    lambda key, created, expires, kind_payload, model, prompt, completion, null_free: Entry(
        key,
        created,
        expires,
        kind_payload[0],
        kind_payload[1],
        model,
        prompt,
        completion,
        null_free=null_free,
    ),
    key=st.text(max_size=60).map(lambda t: "llmcache:ns:" + t),
    created=st.floats(0, 4e9),
    expires=st.none() | st.floats(0, 4e9),
    kind_payload=KIND_AND_PAYLOAD,
    model=st.none() | TEXT,
    prompt=st.integers(0, 2**31),
    completion=st.integers(0, 2**31),
    null_free=st.booleans(),
)
CODECS = st.builds(
    Codec,
    signing_key=st.none() | st.text(min_size=1, max_size=20) | st.binary(min_size=1, max_size=20),
    compress_threshold=st.sampled_from([0, 64, 4096, 1 << 30]),
)


@SETTINGS
@given(entry=ENTRIES, codec=CODECS)
def test_every_entry_round_trips_through_the_codec(entry: Entry, codec: Codec) -> None:
    assert codec.decode(codec.encode(entry), entry.key) == entry


# SDK responses, generated field by field

IDS = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=24)
TOKENS = st.integers(0, 10**6)
MODELS = st.sampled_from(["gpt-4o-mini", "gpt-4.1", "o3", "claude-haiku-4-5"])
CREATED = st.integers(0, 2**32)


def _chat_usage() -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda p, c, cached: {
            "prompt_tokens": p,
            "completion_tokens": c,
            "total_tokens": p + c,
            **({"prompt_tokens_details": {"cached_tokens": cached}} if cached else {}),
        },
        TOKENS,
        TOKENS,
        st.none() | TOKENS,
    )


TOOL_CALLS = st.lists(
    st.fixed_dictionaries(
        {
            "id": IDS,
            "type": st.just("function"),
            "function": st.fixed_dictionaries({"name": IDS, "arguments": TEXT}),
        }
    ),
    min_size=1,
    max_size=2,
)
CHAT = st.fixed_dictionaries(
    {
        "id": IDS,
        "object": st.just("chat.completion"),
        "created": CREATED,
        "model": MODELS,
        "choices": st.lists(
            st.builds(
                lambda i, reason, content, calls, refusal: {
                    "index": i,
                    "finish_reason": reason,
                    "logprobs": None,
                    "message": {
                        "role": "assistant",
                        "content": content,
                        "refusal": refusal,
                        **({"tool_calls": calls} if calls else {}),
                    },
                },
                st.integers(0, 8),
                st.sampled_from(["stop", "length", "tool_calls", "content_filter"]),
                st.none() | TEXT,
                st.none() | TOOL_CALLS,
                st.none() | TEXT,
            ),
            max_size=3,
        ),
        "usage": _chat_usage(),
    },
    optional={"system_fingerprint": IDS, "service_tier": st.sampled_from(["default", "flex"])},
)
COMPLETION = st.fixed_dictionaries(
    {
        "id": IDS,
        "object": st.just("text_completion"),
        "created": CREATED,
        "model": MODELS,
        "choices": st.lists(
            st.fixed_dictionaries(
                {
                    "index": st.integers(0, 8),
                    "text": TEXT,
                    "finish_reason": st.sampled_from(["stop", "length", "content_filter"]),
                    "logprobs": st.none(),
                }
            ),
            max_size=3,
        ),
        "usage": _chat_usage(),
    }
)
EMBEDDINGS = st.fixed_dictionaries(
    {
        "object": st.just("list"),
        "model": st.sampled_from(["text-embedding-3-small", "text-embedding-3-large"]),
        "data": st.lists(
            st.builds(
                lambda i, vector: {"object": "embedding", "index": i, "embedding": vector},
                st.integers(0, 100),
                st.lists(st.floats(-1, 1, width=32), min_size=1, max_size=16),
            ),
            max_size=4,
        ),
        "usage": st.builds(lambda p: {"prompt_tokens": p, "total_tokens": p}, TOKENS),
    }
)
RESPONSE = st.builds(
    lambda rid, created, model, text, inp, out: {
        "id": f"resp_{rid}",
        "object": "response",
        "created_at": created,
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "metadata": {},
        "model": model,
        "output": [
            {
                "type": "message",
                "id": f"msg_{rid}",
                "status": "completed",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
                ],
            }
        ],
        "parallel_tool_calls": True,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": inp,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": inp + out,
        },
    },
    IDS,
    CREATED,
    MODELS,
    TEXT,
    TOKENS,
    TOKENS,
)
MESSAGE = st.builds(
    lambda mid, model, blocks, reason, inp, out: {
        "id": f"msg_{mid}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": reason,
        "stop_sequence": None,
        "usage": {"input_tokens": inp, "output_tokens": out},
    },
    IDS,
    MODELS,
    st.lists(
        st.builds(lambda text: {"type": "text", "text": text}, TEXT)
        | st.builds(
            lambda tid, name, args: {"type": "tool_use", "id": tid, "name": name, "input": args},
            IDS,
            IDS,
            st.dictionaries(TEXT, SCALARS, max_size=3),
        ),
        max_size=3,
    ),
    st.sampled_from(["end_turn", "max_tokens", "stop_sequence", "tool_use"]),
    TOKENS,
    TOKENS,
)
RESPONSE_TYPES: dict[str, tuple[Any, EndpointAdapter, st.SearchStrategy[dict[str, Any]]]] = {
    "chat.completions": (ChatCompletion, OPENAI.adapters["chat.completions"], CHAT),
    "completions": (Completion, OPENAI.adapters["completions"], COMPLETION),
    "embeddings": (CreateEmbeddingResponse, OPENAI.adapters["embeddings"], EMBEDDINGS),
    "responses": (Response, OPENAI.adapters["responses"], RESPONSE),
    "messages": (Message, ANTHROPIC.adapters["messages"], MESSAGE),
}


@pytest.mark.parametrize("endpoint", list(RESPONSE_TYPES))
def test_every_response_type_round_trips_into_an_equal_sdk_object(endpoint: str) -> None:
    sdk_type, adapter, payloads = RESPONSE_TYPES[endpoint]

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(payload=payloads, codec=CODECS)
    def round_trip(payload: dict[str, Any], codec: Codec) -> None:
        original = sdk_type.model_validate(payload)
        stored = dump(original)
        entry = Entry("llmcache:ns:k", 1.0, None, "response", stored, adapter.model(stored))
        rebuilt = adapter.build(codec.decode(codec.encode(entry), entry.key).payload)
        assert type(rebuilt) is sdk_type
        assert rebuilt == original
        assert rebuilt.model_dump() == original.model_dump()

    round_trip()


# -- cache_control ---------------------------------------------------------------------------------

VALUED = ["max-age", "s-maxage", "stale-if-error", "stale-while-revalidate"]
FLAGS = ["no-cache", "no-store", "only-if-cached"]
SPACE = st.text(" \t", max_size=2)


def _cased(name: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda upper: "".join(c.upper() if u else c for c, u in zip(name, upper, strict=True))
    )


@st.composite
def _directive(draw: st.DrawFn, name: str) -> tuple[str, int | bool]:
    """One valid directive as text, with the value it stands for."""
    spelled = draw(_cased(name))
    if name in FLAGS:
        return f"{draw(SPACE)}{spelled}{draw(SPACE)}", True
    seconds = draw(st.integers(0, 10**12))
    digits = "0" * draw(st.integers(0, 2)) + str(seconds)
    text = f"{draw(SPACE)}{spelled}{draw(SPACE)}={draw(SPACE)}{digits}{draw(SPACE)}"
    return text, seconds


@st.composite
def valid_controls(draw: st.DrawFn) -> tuple[str, Directives]:
    names = draw(st.lists(st.sampled_from(VALUED + FLAGS), unique=True, max_size=7))
    parts = [draw(_directive(name)) for name in names]
    text = ",".join(part for part, _ in parts) if parts else draw(SPACE)
    expected = Directives(
        **{name.replace("-", "_"): value for name, (_, value) in zip(names, parts, strict=True)}  # type: ignore[arg-type]
    )
    return text, expected


BAD_VALUES = st.sampled_from(["", "-1", "+5", "1.5", "1e3", "ten", '"60"', "٣", "0x10", "5s"])
UNKNOWN = st.sampled_from(
    ["private", "public", "must-revalidate", "no-transform", "immutable", "max_age", "maxage"]
) | st.text(string.ascii_lowercase + "-", min_size=1, max_size=12).filter(
    lambda n: n not in VALUED + FLAGS
)


@st.composite
def invalid_controls(draw: st.DrawFn) -> tuple[str, str]:
    """A directive list with exactly one thing wrong, and the text the error must name."""
    names = draw(st.lists(st.sampled_from(VALUED + FLAGS), unique=True, max_size=4))
    parts = [draw(_directive(name))[0] for name in names]
    how = draw(st.sampled_from(["unknown", "twice", "flag-value", "no-value", "bad-value"]))
    if how == "unknown":
        culprit = draw(UNKNOWN)
        bad = culprit + (f"={draw(st.integers(0, 99))}" if draw(st.booleans()) else "")
    elif how == "twice":
        culprit = draw(st.sampled_from(names)) if names else "no-cache"
        if not names:
            parts.append("no-cache")
        bad = draw(_directive(culprit))[0].strip() if culprit in names else culprit
    elif how == "flag-value":
        culprit = draw(st.sampled_from(FLAGS))
        parts = [p for p, n in zip(parts, names, strict=True) if n != culprit]
        bad = f"{culprit}={draw(st.sampled_from(['1', 'true', 'yes', '']))}"
    else:
        culprit = draw(st.sampled_from(VALUED))
        parts = [p for p, n in zip(parts, names, strict=True) if n != culprit]
        bad = culprit if how == "no-value" else f"{culprit}={draw(BAD_VALUES)}"
    parts.insert(draw(st.integers(0, len(parts))), bad)
    return ",".join(parts), culprit


@SETTINGS
@given(control=valid_controls())
def test_every_valid_cache_control_parses_to_what_it_says(
    control: tuple[str, Directives],
) -> None:
    text, expected = control
    assert parse_cache_control(text) == expected


@SETTINGS
@given(control=invalid_controls())
def test_every_invalid_cache_control_is_a_value_error_naming_the_culprit(
    control: tuple[str, str],
) -> None:
    text, culprit = control
    with pytest.raises(ValueError, match="cache_control") as info:
        parse_cache_control(text)
    assert culprit.lower() in str(info.value).lower()


@SETTINGS
@given(text=st.text(max_size=60) | st.text("max-agenocstorlyifhdwvi=,0123456789 ", max_size=60))
def test_no_cache_control_string_raises_anything_but_value_error(text: str) -> None:
    try:
        result = parse_cache_control(text)
    except ValueError:
        return
    assert isinstance(result, Directives)
