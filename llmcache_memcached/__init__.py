"""llmcache_memcached."""
