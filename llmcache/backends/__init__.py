"""Built-in cache backends; adapters live in their own packages."""
