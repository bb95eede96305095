"""The simulator speaks the OpenAI and Anthropic wire formats well enough for the real SDKs."""

from __future__ import annotations

import datetime
import enum
import http.client
import json
import math
import time
import uuid
from collections.abc import Iterator
from typing import Any, Literal

import anthropic
import openai
import pytest
from openai.types.responses import Response
from pydantic import BaseModel, Field

from llmcache.tools.simulator import Simulator, instance_of, request_digest

MODEL = "gpt-4o-mini"
CLAUDE = "claude-simulated"


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    with Simulator() as sim:
        yield sim


@pytest.fixture
def sim(simulator: Simulator) -> Iterator[Simulator]:
    """The module's simulator, emptied of requests, with no delay before and after the test."""
    simulator.reset()
    simulator.delay = 0.0
    yield simulator
    simulator.delay = 0.0
    simulator.reset()


@pytest.fixture
def client(sim: Simulator) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key="sk-test", base_url=sim.base_url, max_retries=0) as c:
        yield c


@pytest.fixture
def claude(sim: Simulator) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key="x", base_url=sim.anthropic_base_url, max_retries=0) as c:
        yield c


def chat(text: str = "What is the capital of France?", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], **extra}


def digest_of(text: str) -> str:
    assert text.startswith("[")
    assert "] " in text
    return text[1 : text.index("]")]


def raw_post(sim: Simulator, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
    host, port = sim.anthropic_base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_chat_answer_embeds_the_digest_of_its_own_request(
    client: openai.OpenAI, sim: Simulator
) -> None:
    for question in ("one", "two", "three"):
        answer = client.chat.completions.create(**chat(question))
        content = answer.choices[0].message.content or ""
        assert digest_of(content) == request_digest(sim.requests[-1].body)
        assert question in content
    assert answer.object == "chat.completion"
    assert answer.choices[0].finish_reason == "stop"


def test_digest_ignores_transport_keys_but_not_the_prompt() -> None:
    body = chat()
    assert request_digest(body) == request_digest({**body, "stream": True, "user": "u"})
    assert request_digest(body) == request_digest({**body, "prompt_cache_key": "k"})
    assert request_digest(body) != request_digest(chat("something else"))


def test_chat_usage_counts_words_plus_four_per_message(client: openai.OpenAI) -> None:
    messages: Any = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "Say hello"}]},
    ]
    answer = client.chat.completions.create(model=MODEL, messages=messages)
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == (3 + 4) + (2 + 4)
    assert answer.usage.completion_tokens == len((answer.choices[0].message.content or "").split())
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    assert answer.usage.prompt_tokens_details is not None


def test_chat_stream_reassembles_to_the_non_stream_answer(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(**chat())
    chunks = list(client.chat.completions.create(**chat(), stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert {chunk.id for chunk in chunks} == {chunks[0].id}
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_chat_stream_include_usage_ends_with_a_usage_chunk(client: openai.OpenAI) -> None:
    options: Any = {"include_usage": True}
    chunks = list(client.chat.completions.create(**chat(), stream=True, stream_options=options))
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks[:-1])
    assert last.usage.completion_tokens == len(text.split())


def test_chat_honours_n_max_tokens_and_forced_tools(client: openai.OpenAI) -> None:
    several = client.chat.completions.create(**chat(), n=3)
    assert [choice.index for choice in several.choices] == [0, 1, 2]
    short = client.chat.completions.create(**chat(), max_completion_tokens=2)
    assert len((short.choices[0].message.content or "").split()) == 2
    assert short.choices[0].finish_reason == "length"
    tool: Any = {
        "type": "function",
        "function": {"name": "lookup", "parameters": {"type": "object"}},
    }
    called = client.chat.completions.create(**chat(), tools=[tool], tool_choice="required")
    assert called.choices[0].finish_reason == "tool_calls"
    call = (called.choices[0].message.tool_calls or [])[0]
    assert call.function.name == "lookup"
    assert json.loads(call.function.arguments) == {}


async def test_async_client_gets_the_same_answer_as_the_sync_one(
    client: openai.OpenAI, sim: Simulator
) -> None:
    sync_answer = client.chat.completions.create(**chat("async please"))
    async with openai.AsyncOpenAI(api_key="x", base_url=sim.base_url, max_retries=0) as aclient:
        async_answer = await aclient.chat.completions.create(**chat("async please"))
        stream = await aclient.chat.completions.create(**chat("async please"), stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert async_answer.choices[0].message.content == sync_answer.choices[0].message.content
    assert text == sync_answer.choices[0].message.content


def test_completions_answer_each_prompt_and_stream_the_same_text(client: openai.OpenAI) -> None:
    answer = client.completions.create(model=MODEL, prompt=["first prompt", "second prompt"])
    assert answer.object == "text_completion"
    assert [choice.index for choice in answer.choices] == [0, 1]
    assert "first prompt" in answer.choices[0].text
    assert "second prompt" in answer.choices[1].text
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == 4
    single = client.completions.create(model=MODEL, prompt="stream me")
    chunks = list(client.completions.create(model=MODEL, prompt="stream me", stream=True))
    assert "".join(chunk.choices[0].text for chunk in chunks) == single.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_embeddings_are_deterministic_unit_vectors_single_or_listed(
    client: openai.OpenAI,
) -> None:
    single = client.embeddings.create(model="text-embedding-3-small", input="alpha")
    listed = client.embeddings.create(model="text-embedding-3-small", input=["beta", "alpha"])
    again = client.embeddings.create(model="text-embedding-3-small", input=["beta", "alpha"])
    assert [d.embedding for d in listed.data] == [d.embedding for d in again.data]
    assert listed.data[1].embedding == single.data[0].embedding  # the SDK asked for base64
    assert listed.data[0].embedding != listed.data[1].embedding
    vector = single.data[0].embedding
    assert len(vector) == 8
    assert all(-1.0 <= v <= 1.0 for v in vector)
    assert math.isclose(math.fsum(v * v for v in vector), 1.0, rel_tol=1e-5)
    assert listed.usage.prompt_tokens == 2
    assert [d.index for d in listed.data] == [0, 1]
    floats = client.embeddings.create(
        model="text-embedding-3-small", input="alpha", encoding_format="float", dimensions=8
    )
    assert floats.data[0].embedding == pytest.approx(vector, rel=1e-6)


def test_embeddings_accept_token_arrays_and_dimensions(client: openai.OpenAI) -> None:
    answer = client.embeddings.create(model="m", input=[[1, 2, 3], [4]], dimensions=20)
    assert [len(d.embedding) for d in answer.data] == [20, 20]
    assert answer.usage.prompt_tokens == 4


def test_responses_answer_validates_against_the_sdk_model(
    client: openai.OpenAI, sim: Simulator
) -> None:
    raw = client.responses.with_raw_response.create(
        model=MODEL, input="Tell me a story", instructions="Be brief."
    )
    Response.model_validate(raw.http_response.json())
    answer = raw.parse()
    assert answer.status == "completed"
    assert digest_of(answer.output_text) == request_digest(sim.requests[-1].body)
    assert answer.usage is not None
    assert answer.usage.input_tokens == (2 + 4) + (4 + 4)  # instructions, then input
    assert answer.usage.output_tokens == len(answer.output_text.split())


def test_responses_stream_events_end_with_a_valid_completed_response(
    client: openai.OpenAI,
) -> None:
    message: Any = [{"role": "user", "content": [{"type": "input_text", "text": "Stream a story"}]}]
    whole = client.responses.create(model=MODEL, input=message)
    events: list[Any] = list(client.responses.create(model=MODEL, input=message, stream=True))
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == whole.output_text
    final = events[-1]
    assert final.type == "response.completed"
    assert Response.model_validate(final.response.to_dict()).output_text == whole.output_text
    with client.responses.stream(model=MODEL, input=message) as stream:
        assert stream.get_final_response().output_text == whole.output_text


def test_anthropic_message_and_both_stream_styles_agree(
    claude: anthropic.Anthropic, sim: Simulator
) -> None:
    ask: dict[str, Any] = {
        "model": CLAUDE,
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    message = claude.messages.create(**ask)
    assert sim.requests[-1].path == "/v1/messages"
    assert message.type == "message"
    assert message.stop_reason == "end_turn"
    text = message.content[0].text
    assert digest_of(text) == request_digest(sim.requests[-1].body)
    assert message.usage.input_tokens == 1 + 4
    assert message.usage.output_tokens == len(text.split())
    events = list(claude.messages.create(**ask, stream=True))
    assert [e.type for e in events][:2] == ["message_start", "content_block_start"]
    assert [e.type for e in events][-3:] == ["content_block_stop", "message_delta", "message_stop"]
    deltas = [e.delta.text for e in events if e.type == "content_block_delta"]
    assert "".join(deltas) == text
    with claude.messages.stream(**ask) as stream:
        assert "".join(stream.text_stream) == text
        final: Any = stream.get_final_message()
    assert final.content[0].text == text
    assert final.usage.output_tokens == message.usage.output_tokens


def test_openai_prompt_cache_reports_cached_tokens_on_the_second_request(
    client: openai.OpenAI,
) -> None:
    key = uuid.uuid4().hex
    system = {"role": "system", "content": f"You are a careful assistant number {key}."}

    def ask(question: str) -> int:
        messages: Any = [system, {"role": "user", "content": question}]
        answer = client.chat.completions.create(
            model=MODEL,
            messages=messages,
            prompt_cache_key=key,
        )
        assert answer.usage is not None
        assert answer.usage.prompt_tokens_details is not None
        return answer.usage.prompt_tokens_details.cached_tokens or 0

    assert ask("first question") == 0
    assert ask("second question") == 7 + 4  # the system message: 7 words + 4
    other = client.responses.create(
        model=MODEL, instructions=f"Cache me {key}", input="q", prompt_cache_key=key
    )
    again = client.responses.create(
        model=MODEL, instructions=f"Cache me {key}", input="r", prompt_cache_key=key
    )
    assert other.usage is not None
    assert again.usage is not None
    assert other.usage.input_tokens_details.cached_tokens == 0
    assert again.usage.input_tokens_details.cached_tokens == 3 + 4


def test_anthropic_prompt_cache_writes_then_reads_the_marked_prefix(
    claude: anthropic.Anthropic,
) -> None:
    words = f"You know everything about {uuid.uuid4().hex}."
    system: Any = [{"type": "text", "text": words, "cache_control": {"type": "ephemeral"}}]

    def ask(question: str) -> Any:
        messages: Any = [{"role": "user", "content": question}]
        return claude.messages.create(
            model=CLAUDE,
            max_tokens=64,
            system=system,
            messages=messages,
        ).usage

    first, second = ask("one two three"), ask("four five")
    assert (first.cache_creation_input_tokens, first.cache_read_input_tokens) == (9, 0)
    assert (second.cache_creation_input_tokens, second.cache_read_input_tokens) == (0, 9)
    assert (first.input_tokens, second.input_tokens) == (3 + 4, 2 + 4)


def test_fail_next_raises_internal_server_error_then_recovers(
    client: openai.OpenAI, sim: Simulator
) -> None:
    sim.fail_next(1)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(**chat())
    assert caught.value.status_code == 500
    assert caught.value.body == {
        "message": "simulated failure",
        "type": "server_error",
        "code": None,
    }
    assert client.chat.completions.create(**chat()).choices[0].message.content
    assert sim.count() == 2


def test_sdk_retries_consume_failures_and_count_as_requests(sim: Simulator) -> None:
    sim.fail_next(2, status=503)
    with openai.OpenAI(api_key="x", base_url=sim.base_url) as retrying:  # max_retries=2
        assert retrying.chat.completions.create(**chat()).choices
    assert sim.count("/v1/chat/completions") == 3


def test_count_filters_by_path_and_reset_forgets(client: openai.OpenAI, sim: Simulator) -> None:
    client.chat.completions.create(**chat())
    client.chat.completions.create(**chat())
    client.embeddings.create(model="m", input="x")
    assert sim.count() == 3
    assert sim.count("/v1/chat/completions") == 2
    assert sim.count("/v1/embeddings") == 1
    request = sim.requests[0]
    assert (request.method, request.path, request.body["model"]) == (
        "POST",
        "/v1/chat/completions",
        MODEL,
    )
    assert request.headers["authorization"] == "Bearer sk-test"
    sim.reset()
    assert sim.count() == 0
    assert sim.requests == []


def test_unknown_paths_are_404_and_non_json_bodies_are_400(sim: Simulator) -> None:
    status, body = raw_post(sim, "/v1/nowhere", b"{}")
    assert status == 404
    assert body["error"]["type"] == "invalid_request_error"
    status, body = raw_post(sim, "/v1/chat/completions", b"{not json")
    assert status == 400
    assert "error" in body
    assert sim.count() == 2


def test_delay_is_honoured_for_plain_and_streamed_answers(
    client: openai.OpenAI, sim: Simulator
) -> None:
    sim.delay = 0.2
    started = time.perf_counter()
    client.chat.completions.create(**chat())
    assert time.perf_counter() - started >= 0.2
    started = time.perf_counter()
    assert list(client.chat.completions.create(**chat(), stream=True))
    assert time.perf_counter() - started >= 0.2


def test_stop_is_idempotent_and_closes_the_port() -> None:
    sim = Simulator().start()
    url = sim.base_url
    with openai.OpenAI(api_key="x", base_url=url, max_retries=0) as c:
        assert c.chat.completions.create(**chat()).choices
        sim.stop()
        sim.stop()
        with pytest.raises(openai.APIConnectionError):
            c.chat.completions.create(**chat())


# -- structured output and tool calls ------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Place(BaseModel):
    city: str
    country: str = "France"
    population: int = Field(ge=1000)


class Answer(BaseModel):
    """A model with what Pydantic schemas carry: nesting, unions, enums, bounds, formats."""

    title: str = Field(min_length=3, max_length=40)
    score: float = Field(gt=0, le=1)
    count: int = Field(multiple_of=5)
    done: bool
    color: Color
    mode: Literal["fast", "slow"]
    tags: list[str] = Field(min_length=2)
    places: list[Place]
    best: Place | None
    note: str | None = None
    when: datetime.date
    pair: tuple[int, str]
    extra: dict[str, int]


class Tree(BaseModel):
    name: str
    children: list[Tree]
    parent: Tree | None


class Weather(BaseModel):
    """Get the weather of a city."""

    city: str
    unit: Literal["C", "F"]


def test_schema_instances_validate_against_the_pydantic_models_they_come_from() -> None:
    for model in (Answer, Tree, Place, Weather):
        value = instance_of(model.model_json_schema())
        assert model.model_validate(value) is not None
        assert instance_of(model.model_json_schema()) == value  # deterministic
    assert instance_of({"type": "array", "items": {"type": "integer"}, "minItems": 3}) == [1, 1, 1]
    assert instance_of({"type": ["null", "string"], "format": "email"}) == "user@example.com"
    assert instance_of({"allOf": [{"$ref": "#/$defs/A"}], "$defs": {"A": {"const": 7}}}) == 7


def test_chat_structured_output_parses_into_the_model_whole_and_streamed(
    client: openai.OpenAI, sim: Simulator
) -> None:
    parsed = client.chat.completions.parse(**chat(), response_format=Answer)
    answer = parsed.choices[0].message.parsed
    assert isinstance(answer, Answer)
    sent = sim.requests[-1].body["response_format"]
    assert sent["type"] == "json_schema"
    assert answer == Answer.model_validate(instance_of(sent["json_schema"]["schema"]))
    with client.chat.completions.stream(**chat(), response_format=Answer) as stream:
        assert stream.get_final_completion().choices[0].message.parsed == answer
    loose = client.chat.completions.create(**chat(), response_format={"type": "json_object"})
    assert json.loads(loose.choices[0].message.content or "")["answer"].startswith("[")


def test_chat_calls_a_tool_for_a_user_turn_and_answers_once_a_result_came_back(
    client: openai.OpenAI,
) -> None:
    tools: Any = [openai.pydantic_function_tool(Weather), openai.pydantic_function_tool(Place)]
    first = client.chat.completions.parse(**chat("Weather in Paris?"), tools=tools)
    assert first.choices[0].finish_reason == "tool_calls"
    [call] = first.choices[0].message.tool_calls or []
    assert call.function.name == "Weather"
    assert isinstance(call.function.parsed_arguments, Weather)
    again = client.chat.completions.create(**chat("Weather in Paris?"), tools=tools)
    [repeat] = again.choices[0].message.tool_calls or []
    assert (repeat.id, repeat.function.arguments) == (call.id, call.function.arguments)
    history: Any = [
        {"role": "user", "content": "Weather in Paris?"},
        first.choices[0].message.model_dump(exclude={"parsed"}, exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees"},
    ]
    final = client.chat.completions.create(model=MODEL, messages=history, tools=tools)
    assert final.choices[0].finish_reason == "stop"
    assert (final.choices[0].message.content or "").startswith("[")
    declined = client.chat.completions.create(**chat(), tools=tools, tool_choice="none")
    assert declined.choices[0].message.tool_calls is None


def test_required_tool_choice_moves_on_to_a_tool_not_called_yet(client: openai.OpenAI) -> None:
    tools: Any = [openai.pydantic_function_tool(Weather), openai.pydantic_function_tool(Place)]
    first = client.chat.completions.create(**chat(), tools=tools, tool_choice="required")
    [call] = first.choices[0].message.tool_calls or []
    history: Any = [
        {"role": "user", "content": "q"},
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "done"},
    ]
    second = client.chat.completions.create(
        model=MODEL, messages=history, tools=tools, tool_choice="required"
    )
    assert [c.function.name for c in second.choices[0].message.tool_calls or []] == ["Place"]
    named = {"type": "function", "function": {"name": "Place"}}
    forced = client.chat.completions.create(**chat(), tools=tools, tool_choice=named)
    assert Place.model_validate_json(
        (forced.choices[0].message.tool_calls or [])[0].function.arguments
    )


def test_streamed_tool_call_arguments_arrive_in_pieces_that_join_to_valid_json(
    client: openai.OpenAI,
) -> None:
    tools: Any = [openai.pydantic_function_tool(Weather)]
    chunks = list(client.chat.completions.create(**chat(), tools=tools, stream=True))
    deltas = [c.choices[0].delta.tool_calls for c in chunks if c.choices[0].delta.tool_calls]
    pieces = [d[0].function.arguments for d in deltas if d[0].function]
    assert len([p for p in pieces if p]) > 1
    assert Weather.model_validate_json("".join(p or "" for p in pieces))
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_responses_structured_output_and_function_calls(
    client: openai.OpenAI, sim: Simulator
) -> None:
    parsed = client.responses.parse(model=MODEL, input="Describe Paris", text_format=Place)
    sent = sim.requests[-1].body["text"]["format"]["schema"]
    assert parsed.output_parsed == Place.model_validate(instance_of(sent))
    with client.responses.stream(model=MODEL, input="Describe Paris", text_format=Place) as s:
        assert s.get_final_response().output_parsed == parsed.output_parsed
    tool: Any = {
        "type": "function",
        "name": "weather",
        "parameters": Weather.model_json_schema(),
        "strict": False,
    }
    called = client.responses.create(model=MODEL, input="Weather?", tools=[tool])
    [item] = called.output
    assert item.type == "function_call"
    assert Weather.model_validate_json(item.arguments)
    with client.responses.stream(model=MODEL, input="Weather?", tools=[tool]) as stream:
        events = list(stream)
        streamed = stream.get_final_response().output[0]
    assert any(e.type == "response.function_call_arguments.delta" for e in events)
    assert streamed.type == "function_call"
    assert streamed.arguments == item.arguments
    assert streamed.call_id == item.call_id
    follow_up: Any = [
        {"role": "user", "content": "Weather?"},
        item.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": item.call_id, "output": "18 degrees"},
    ]
    final = client.responses.create(model=MODEL, input=follow_up, tools=[tool])
    assert final.output_text.startswith("[")


def test_anthropic_tool_use_then_text_and_structured_output(
    claude: anthropic.Anthropic, sim: Simulator
) -> None:
    tool: Any = {"name": "weather", "description": "W", "input_schema": Weather.model_json_schema()}
    ask: dict[str, Any] = {"model": CLAUDE, "max_tokens": 256, "tools": [tool]}
    question: Any = [{"role": "user", "content": "Weather in Paris?"}]
    first = claude.messages.create(**ask, messages=question)
    assert first.stop_reason == "tool_use"
    [block] = first.content
    assert block.type == "tool_use"
    assert Weather.model_validate(block.input)
    with claude.messages.stream(**ask, messages=question) as stream:
        streamed: Any = stream.get_final_message().content[0]
    assert (streamed.id, streamed.input) == (block.id, block.input)
    history: Any = [
        *question,
        {"role": "assistant", "content": [block.model_dump()]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "18"}],
        },
    ]
    final = claude.messages.create(**ask, messages=history)
    assert final.stop_reason == "end_turn"
    assert final.content[0].type == "text"
    parsed = claude.messages.parse(
        model=CLAUDE, max_tokens=256, messages=question, output_format=Weather
    )
    sent = sim.requests[-1].body["output_config"]["format"]["schema"]
    assert parsed.parsed_output == Weather.model_validate(instance_of(sent))


def test_tool_choice_none_answers_in_text_on_every_api(
    client: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    schema = Weather.model_json_schema()
    chat_tool: Any = openai.pydantic_function_tool(Weather)
    answer = client.chat.completions.create(**chat(), tools=[chat_tool], tool_choice="none")
    assert (answer.choices[0].message.content or "").startswith("[")
    tool: Any = {"type": "function", "name": "weather", "parameters": schema, "strict": False}
    response = client.responses.create(model=MODEL, input="Hi", tools=[tool], tool_choice="none")
    assert response.output_text.startswith("[")
    anthropic_tool: Any = {"name": "weather", "input_schema": schema}
    message = claude.messages.create(
        model=CLAUDE,
        max_tokens=64,
        messages=[{"role": "user", "content": "Hi"}],
        tools=[anthropic_tool],
        tool_choice={"type": "none"},
    )
    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text"
