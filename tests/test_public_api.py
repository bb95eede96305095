"""Guards on the public surface: exports, hook documentation, no unsafe deserialisation."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import llmcache
from llmcache import hookspecs

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["llmcache", "llmcache_redis", "llmcache_sql", "llmcache_memcached"]


def _isort_key(name: str) -> tuple[int, str]:
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return kind, name


def test_all_is_sorted_and_complete() -> None:
    assert llmcache.__all__ == sorted(llmcache.__all__, key=_isort_key)
    public = {
        name
        for name, value in vars(llmcache).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public <= set(llmcache.__all__) | {"annotations"}
    for name in llmcache.__all__:
        assert hasattr(llmcache, name), name


def test_public_errors_say_they_are_llmcaches() -> None:
    for error in (
        llmcache.LLMCacheError,
        llmcache.ConfigError,
        llmcache.BackendError,
        llmcache.CacheMiss,
    ):
        assert error.__module__ == "llmcache"
    assert issubclass(llmcache.ConfigError, ValueError)
    assert issubclass(llmcache.MissingExtraError, ImportError)


def test_every_hook_is_prefixed_typed_and_documented() -> None:
    hooks = [name for name in dir(hookspecs) if name.startswith("llmcache_")]
    assert len(hooks) >= 8
    readme = (ROOT / "README.md").read_text()
    for name in hooks:
        function = getattr(hookspecs, name)
        assert function.__doc__, name
        assert ":param" in function.__doc__, name
        assert all(
            p.annotation is not inspect.Parameter.empty
            for p in inspect.signature(function).parameters.values()
        )
        assert name in readme, f"{name} is not documented in the README"


def test_no_module_deserialises_unsafely() -> None:
    banned_modules = {"pickle", "marshal", "shelve", "dill", "cloudpickle"}
    banned_calls = {"eval", "exec"}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = {alias.name.split(".")[0] for alias in node.names}
                    assert not names & banned_modules, f"{path} imports {names & banned_modules}"
                elif isinstance(node, ast.ImportFrom):
                    assert (node.module or "").split(".")[0] not in banned_modules, path
                elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                    assert node.func.id not in banned_calls, (
                        f"{path}:{node.lineno} calls {node.func.id}"
                    )


def test_typed_package_marker_is_shipped() -> None:
    assert (ROOT / "llmcache" / "py.typed").exists()
