"""Modules that moved in 0.2 keep their old import paths for one release, with a warning."""

from __future__ import annotations

import subprocess
import sys

import pytest

from llmcache._moved import MOVED, new_path


def test_every_old_path_imports_and_warns() -> None:
    """Each old path, imported first in a fresh interpreter, warns once naming its new place
    and hands out the new module's very objects."""
    code = (
        "import importlib, sys, warnings\n"
        "import llmcache\n"
        "from llmcache._moved import MOVED\n"
        "for old, new_name in sorted(MOVED.items()):\n"
        "    with warnings.catch_warnings(record=True) as seen:\n"
        "        warnings.simplefilter('always')\n"
        "        module = importlib.import_module(old)\n"
        "    new = importlib.import_module(new_name)\n"
        "    public = [n for n in vars(new) if not n.startswith('_')]\n"
        "    assert all(getattr(module, n) is getattr(new, n) for n in public), (old, public)\n"
        "    [w] = [w for w in seen if issubclass(w.category, DeprecationWarning)]\n"
        "    assert new_name in str(w.message), w.message\n"
        "print(len(MOVED))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(len(MOVED))]


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
