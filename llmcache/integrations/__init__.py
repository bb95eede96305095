"""Integrations of llmcache with frameworks, one module each, imported on demand.

Importing this package imports no framework: ``llmcache.integrations.langchain`` needs
``pip install 'llmcache[langchain]'`` and is only loaded when imported by name.
"""

__all__: list[str] = []
