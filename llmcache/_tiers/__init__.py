"""Tiered storage: tiers built from URLs, the entry codec, breakers and the tier operations."""
