"""The client wrapper: ``CachedClient`` and the cached resources it mounts on an SDK client."""
