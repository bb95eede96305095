"""Packaging: every runtime import is declared, and a missing extra says which to install."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llmcache.tools.simulator import Simulator

ROOT = Path(__file__).resolve().parent.parent

# Makes `import sqlalchemy` fail as it does where llmcache[sql] is not installed.
_NO_SQLALCHEMY = textwrap.dedent(
    """
    import sys

    class _Missing:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "sqlalchemy":
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    sys.meta_path.insert(0, _Missing())
    """
)


def _without_sqlalchemy(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _NO_SQLALCHEMY + textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_sql_url_without_sqlalchemy_names_the_extra(asynchronous: bool) -> None:
    wrapped = "AsyncOpenAI" if asynchronous else "OpenAI"
    done = _without_sqlalchemy(
        f"""
        import llmcache, openai
        try:
            llmcache.CachedClient(openai.{wrapped}(api_key="x"), tiers=["sqlite:///c.db"])
        except llmcache.MissingExtraError as exc:
            assert isinstance(exc, ImportError) and exc.extra == "sql", exc
            print(exc)
        """
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'llmcache[sql]'" in done.stdout


@pytest.mark.parametrize(
    "command", [["stats", "sqlite:///c.db"], ["demo", "--tier", "sqlite:///c.db"]]
)
def test_the_cli_names_the_missing_extra(command: list[str], tmp_path: Path) -> None:
    done = _without_sqlalchemy(
        "from llmcache.tools.cli import main\nmain(sys.argv[1:])\n", *command
    )
    assert done.returncode == 1
    assert "pip install 'llmcache[sql]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_clean_install_imports_and_caches_with_its_declared_dependencies(
    tmp_path: Path, sim: Simulator
) -> None:
    """`pip install .` alone (plus the SDK it wraps) is enough for the core."""
    venv = tmp_path / "venv"
    uv = shutil.which("uv")
    python = venv / "bin" / "python"
    if uv is not None:
        subprocess.run([uv, "venv", "-q", "-p", sys.executable, str(venv)], check=True)
        install = [uv, "pip", "install", "-q", "-p", str(python)]
    else:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        install = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*install, str(ROOT)], check=True, timeout=600)
    bare = subprocess.run(
        [str(python), "-c", "import llmcache; print(len(llmcache.__all__))"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bare.returncode == 0, bare.stderr
    subprocess.run([*install, str(ROOT), "openai"], check=True, timeout=600)
    script = textwrap.dedent(
        f"""
        import llmcache, openai
        sdk = openai.OpenAI(api_key="x", base_url={sim.base_url!r}, max_retries=0)
        client = llmcache.CachedClient(sdk, tiers=["memory://"])
        ask = dict(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
        client.chat.completions.create(**ask)
        assert client.chat.completions.create(**ask).cache_hit
        http = llmcache.http_client()
        via = openai.OpenAI(api_key="x", base_url={sim.base_url!r}, http_client=http)
        via.chat.completions.create(**ask)
        print(client.stats().hits, http.cache.stats().hits)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [str(python), "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "0"]
    assert sim.count() == 2
