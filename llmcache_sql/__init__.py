"""llmcache_sql."""
