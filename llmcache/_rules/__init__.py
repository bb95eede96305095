"""What a request means to the cache: its options, key, TTL, prompt prefix and price."""
