"""Run the README's integration recipes as written, against the simulator.

A recipe is the ``python`` block after an HTML comment ``<!-- recipe: NAME -->`` in the
README. It reads the SDKs' usual environment variables, which point at the simulator.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from llmcache.tools.simulator import Simulator
from tests.servers import IN_CI

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "sk-test-framework-key"


def require(*modules: str) -> None:
    """Skip the calling test module when a framework is missing; fail instead in CI."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if not missing:
        return
    message = f"missing {', '.join(missing)}: run these tests with nox"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message, allow_module_level=True)


def readme_recipe(name: str) -> str:
    """Return the ``python`` block the README marks with ``<!-- recipe: name -->``."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(rf"<!-- recipe: {re.escape(name)} -->\s*```python\n(.*?)```", readme, re.S)
    assert found, f"no README recipe marked {name!r}"
    return found.group(1)


def simulator_env(sim: Simulator) -> dict[str, str]:
    """Return the environment the SDKs read their endpoint and key from, set to ``sim``."""
    return {
        "OPENAI_BASE_URL": sim.base_url,
        "OPENAI_API_KEY": API_KEY,
        "OPENAI_API_BASE": sim.base_url,  # llama-index reads this one
        "ANTHROPIC_BASE_URL": sim.anthropic_base_url,
        "ANTHROPIC_API_KEY": API_KEY,
    }


def run_recipe(name: str, cwd: Path, sim: Simulator) -> str:
    """Run the README recipe ``name`` as written, in a new interpreter; return its stdout.

    The recipe reads the SDKs' usual environment variables, pointed at the simulator.
    """
    env = {**os.environ, **simulator_env(sim), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", readme_recipe(name)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
