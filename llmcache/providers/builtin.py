"""Register the providers whose SDK is installed: OpenAI, Anthropic, google-genai."""

from __future__ import annotations

from llmcache.hookspecs import RegisterProvider, hookimpl

__all__ = ["llmcache_register_providers"]


@hookimpl
def llmcache_register_providers(register: RegisterProvider) -> None:
    """Register OpenAI (also the fallback for OpenAI-compatible clients), Anthropic and
    google-genai, each when its SDK can be imported."""
    try:
        from llmcache.providers.openai import OPENAI
    except ImportError:  # the openai package is not installed
        pass
    else:
        register(OPENAI)
    try:
        from llmcache.providers.anthropic import ANTHROPIC
    except ImportError:
        pass
    else:
        register(ANTHROPIC)
    try:
        from llmcache.providers.genai import GENAI
    except ImportError:
        pass
    else:
        register(GENAI)
