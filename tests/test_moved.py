"""Modules that moved in 0.2 keep their old import paths for one release, with a warning."""

from __future__ import annotations

import subprocess
import sys

import pytest

from llmcache._moved import MOVED, new_path


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_imports_and_warns(old: str) -> None:
    code = (
        "import importlib, warnings\n"
        "import llmcache\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    warnings.simplefilter('always')\n"
        f"    old = importlib.import_module({old!r})\n"
        f"new = importlib.import_module({MOVED[old]!r})\n"
        "public = [n for n in vars(new) if not n.startswith('_')]\n"
        "assert all(getattr(old, n) is getattr(new, n) for n in public), public\n"
        "[w] = [w for w in seen if issubclass(w.category, DeprecationWarning)]\n"
        f"assert {MOVED[old]!r} in str(w.message), w.message\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_names_from_an_old_path_are_the_new_objects() -> None:
    with pytest.warns(DeprecationWarning, match="llmcache._rules.keys"):
        from llmcache.keys import request_digest  # type: ignore[import-not-found]
    from llmcache._rules.keys import request_digest as current

    assert request_digest is current


def test_a_submodule_of_a_moved_package_follows_it() -> None:
    assert new_path("llmcache.simulator.server") == "llmcache.tools.simulator.server"
    assert new_path("llmcache.http.client") is None
    assert new_path("llmcache") is None
    from llmcache.simulator.server import Simulator  # type: ignore[import-not-found]

    from llmcache.tools.simulator.server import Simulator as current

    assert Simulator is current


def test_adapters_import_only_the_public_api() -> None:
    """``llmcache_redis``, ``llmcache_sql`` and ``llmcache_memcached`` are written like any
    third-party plugin: they import ``llmcache``, ``llmcache.backends``, ``llmcache.errors``,
    ``llmcache.hookspecs`` and ``llmcache.testing``, nothing private or moved."""
    import ast
    from pathlib import Path

    public = {"llmcache", "llmcache.errors", "llmcache.hookspecs", "llmcache.testing"}
    root = Path(__file__).parent.parent
    bad = []
    for package in ("llmcache_redis", "llmcache_sql", "llmcache_memcached"):
        for path in (root / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                for name in names:
                    if not name.startswith("llmcache.") and name != "llmcache":
                        continue
                    if name in public or name.startswith("llmcache.backends"):
                        continue
                    bad.append(f"{path.relative_to(root)}: {name}")
    assert not bad
