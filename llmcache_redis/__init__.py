"""llmcache_redis."""
