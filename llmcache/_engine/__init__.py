"""The engine: one call from planning to a hit or a stored answer, sync and async.

Every door (the wrapper, the HTTP-level transports, LangChain's cache) drives the engines here
over one :class:`~llmcache._engine.core.CacheCore`.
"""
