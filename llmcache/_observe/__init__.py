"""What the cache reports: statistics, events for observers, throttled failure logs."""
