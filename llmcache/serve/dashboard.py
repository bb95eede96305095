"""``GET /``: the dashboard, one static page that polls ``/api/stats`` once a second.

Plain HTML, CSS and JavaScript in ``dashboard.html`` beside this module: no build step, no
third-party script, nothing fetched but ``/api/stats``.
"""

from __future__ import annotations

import functools
from importlib.resources import files

__all__ = ["dashboard_html"]


@functools.cache
def dashboard_html() -> str:
    """Return the dashboard page."""
    return files(__package__).joinpath("dashboard.html").read_text(encoding="utf-8")
