"""Test mode: record, replay or strictly replay the LLM API calls of a test suite.

The pytest plugin (:mod:`llmcache.testmode.plugin`, enabled by ``llmcache[pytest]``)
answers every OpenAI and Anthropic call a test makes from a recording file of its module;
:func:`explain` tells why a request misses a store, outside tests too.
"""

from llmcache.testmode.diff import Difference, Nearest
from llmcache.testmode.explain import Explanation, explain
from llmcache.testmode.lines import FORMAT_VERSION, RecordingError
from llmcache.testmode.session import Recording
from llmcache.testmode.store import MODES, RecordingStore, open_recording

__all__ = [
    "FORMAT_VERSION",
    "MODES",
    "Difference",
    "Explanation",
    "Nearest",
    "Recording",
    "RecordingError",
    "RecordingStore",
    "explain",
    "open_recording",
]
