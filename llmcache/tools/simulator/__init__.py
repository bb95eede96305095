"""Serve fake OpenAI and Anthropic endpoints on loopback for tests, benchmarks and the demo.

Every text answer starts with ``[<request_digest(body)>]``, so a test can tie each answer to its
request. Tokens are whitespace-separated words, plus 4 per message in chat formats. Requests
that offer tools or ask for structured output get tool calls and JSON valid against the
request's schemas (:mod:`llmcache.tools.simulator.turns` says when), so frameworks' agent loops,
structured output and tool calls run for real.
"""

from llmcache.tools.simulator.common import request_digest
from llmcache.tools.simulator.schema import instance_of
from llmcache.tools.simulator.server import RecordedRequest, Simulator

__all__ = ["RecordedRequest", "Simulator", "instance_of", "request_digest"]
