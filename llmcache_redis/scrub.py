"""Keep user content out of the errors the Redis tiers raise (and the core logs).

redis-py annotates a failed pipeline's error with the command and its arguments:
``Command # 3 (SET llmcache:ns:user_1:… <the entry's bytes>) of pipeline caused error: …``.
The value holds a user's prompt and answer, and the key the user's scope; only the error
itself may reach a log line, an ``llmcache_on_error`` event or a ``BackendError``.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["aexecute", "execute", "scrubbed"]

_MARKER: Final = " of pipeline caused error: "


def scrubbed(exc: BaseException) -> BaseException:
    """Return ``exc``, or a copy of the same class without the echoed command."""
    text = str(exc)
    if _MARKER not in text:
        return exc
    clean = type(exc).__new__(type(exc))
    clean.args = (text.split(_MARKER, 1)[1],)
    return clean


def execute(pipe: Any) -> list[Any]:
    """Run a pipeline; its error, if any, is raised without the commands' arguments."""
    try:
        return pipe.execute()  # type: ignore[no-any-return]
    except Exception as exc:
        clean = scrubbed(exc)
        if clean is exc:
            raise
        raise clean from None


async def aexecute(pipe: Any) -> list[Any]:
    """The asyncio twin of :func:`execute`."""
    try:
        return await pipe.execute()  # type: ignore[no-any-return]
    except Exception as exc:
        clean = scrubbed(exc)
        if clean is exc:
            raise
        raise clean from None
