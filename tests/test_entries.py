"""What a miss stores: the server's JSON text, validated once, served again by validation."""

from __future__ import annotations

import json
import threading
from typing import Any

import msgpack
from conftest import chat
from openai.types.chat import ChatCompletion

from llmcache._observe.stats import FOLD_AT, StatsRecorder
from llmcache._rules.keys import physical_key
from llmcache._tiers.codec import Codec
from llmcache.backends.memory import MemoryBackend
from llmcache.providers.base import compact_json
from llmcache.tools.simulator import Simulator


def _stored(client: Any, key: str) -> Any:
    """The entry the client's memory tier holds for a logical key."""
    backend = client._tiers.tiers[0].backend  # white-box: the bytes behind the answer
    data = backend.get(physical_key("default", key))
    assert data is not None
    return Codec().decode(data, physical_key("default", key))


def test_a_miss_stores_the_json_text_the_server_sent(client: Any, sim: Simulator) -> None:
    live = client.chat.completions.create(**chat())
    entry = _stored(client, live.cache_key)
    assert entry.kind == "json"
    assert json.loads(entry.payload) == live.model_dump(mode="json", exclude_unset=True)
    assert (entry.model, entry.prompt_tokens, entry.completion_tokens) == (
        live.model,
        live.usage.prompt_tokens,
        live.usage.completion_tokens,
    )


def test_a_miss_answers_what_the_sdk_itself_would(client: Any, openai_client: Any) -> None:
    live = client.chat.completions.create(**chat())
    plain = openai_client.chat.completions.create(**chat())
    assert type(live) is type(plain) is ChatCompletion
    ours, theirs = live.model_dump(), plain.model_dump()
    for answer in (ours, theirs):  # an answer's own identity and time
        del answer["id"], answer["created"]
    assert ours == theirs
    assert live.model_fields_set == plain.model_fields_set
    assert live._request_id is not None
    assert live._request_id.startswith("req_")
    assert live._request_id != plain._request_id


async def test_an_async_miss_stores_the_json_text(async_client: Any, sim: Simulator) -> None:
    live = await async_client.chat.completions.create(**chat())
    assert live._request_id.startswith("req_")
    hit = await async_client.chat.completions.create(**chat())
    assert hit.cache_hit
    assert hit.model_dump() == live.model_dump()
    assert sim.count() == 1


def test_indented_json_is_stored_compact_and_served_equal(client: Any, sim: Simulator) -> None:
    sim.indent = 2  # as the OpenAI API answers
    live = client.chat.completions.create(**chat())
    entry = _stored(client, live.cache_key)
    assert b"\n" not in entry.payload
    assert json.loads(entry.payload) == live.model_dump(mode="json", exclude_unset=True)
    hit = client.chat.completions.create(**chat())
    assert hit.cache_hit
    assert hit.model_dump() == live.model_dump()


def test_compact_json_is_exact() -> None:
    huge = b'{\n  "n": 123456789012345678901234567890\n}'
    assert compact_json(huge) == b'{"n":123456789012345678901234567890}'
    assert compact_json(b'{\n  "t": "caf\xc3\xa9"\n}') == b'{"t":"caf\xc3\xa9"}'
    assert compact_json(b"not json\n") == b"not json\n"
    assert compact_json(b'{\n  "a": [1, 2.5, "x\\ny"]\n}') == b'{"a":[1,2.5,"x\\ny"]}'
    assert compact_json(b'{"a":1}') == b'{"a":1}'


def test_an_entry_stored_as_plain_data_is_still_served(client: Any, sim: Simulator) -> None:
    live = client.chat.completions.create(**chat())
    pkey = physical_key("default", live.cache_key)
    backend = client._tiers.tiers[0].backend
    magic, version, header, _, signature = msgpack.unpackb(backend.get(pkey))
    header[3] = "response"  # the kind an entry written from a dump carries
    payload = live.model_dump(mode="json", exclude_unset=True)
    backend.set(pkey, msgpack.packb([magic, version, header, payload, signature]), None)
    hit = client.chat.completions.create(**chat())
    assert hit.cache_hit
    assert hit.model_dump() == live.model_dump()
    assert sim.count() == 1


def test_a_wrapped_client_without_raw_responses_stores_a_dump(
    make_client: Any, openai_client: Any, sim: Simulator
) -> None:
    class Plain:
        """An OpenAI-compatible object: create() alone, no with_raw_response."""

        def __init__(self, resource: Any) -> None:
            self.create = resource.create

    class Chat:
        def __init__(self) -> None:
            self.completions = Plain(openai_client.chat.completions)

    class Compatible:
        base_url = openai_client.base_url
        chat = Chat()

    client = make_client(wrapped=Compatible())
    live = client.chat.completions.create(**chat())
    assert _stored(client, live.cache_key).kind == "response"
    assert client.chat.completions.create(**chat()).cache_hit
    assert sim.count() == 1


def test_hits_from_many_threads_are_all_counted() -> None:
    stats = StatsRecorder()
    per_thread, threads = FOLD_AT + 37, 4

    def hits(tier: str) -> None:
        for n in range(per_thread):
            stats.hit(tier, "gpt-4o-mini", 10, 1, n % 2 == 0)

    workers = [threading.Thread(target=hits, args=(f"L{i % 2 + 1}:memory",)) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    snapshot = stats.snapshot()
    total = per_thread * threads
    assert (snapshot.hits, snapshot.requests) == (total, total)
    assert snapshot.coalesced == threads * ((per_thread + 1) // 2)
    assert snapshot.tokens_saved == 11 * total
    assert dict(snapshot.tier_hits) == {"L1:memory": 2 * per_thread, "L2:memory": 2 * per_thread}


def test_memory_reads_without_a_lock_survive_concurrent_writes_and_clears() -> None:
    backend = MemoryBackend(max_entries=64)
    keys = [f"k{i}" for i in range(128)]
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(200):
                for key in keys:
                    value = backend.get(key)
                    assert value is None or value == key.encode()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def write() -> None:
        try:
            for round_ in range(200):
                for key in keys[round_ % 2 :: 2]:
                    backend.set(key, key.encode(), None if round_ % 3 else 0.0)
                if round_ % 10 == 0:
                    backend.clear("k1*")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=read) for _ in range(3)] + [threading.Thread(target=write)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert len(backend) <= 64
    assert backend.nbytes == sum(len(backend.get(k) or b"") for k in keys)
