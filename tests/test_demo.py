"""``llmcache demo`` end to end, as a subprocess, against the built-in simulator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _demo(tmp_path: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_BASE_URL"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "llmcache", "demo", "--delay", "0.05", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


def test_demo_runs_on_a_sqlite_file_and_a_second_run_is_served_from_it(tmp_path: Path) -> None:
    first = _demo(tmp_path)
    assert "requests                 18" in first
    assert "hits                     12 (67%)" in first
    assert (tmp_path / "llmcache" / "demo.db").exists()
    second = _demo(tmp_path, "--rounds", "1")
    assert "hits                     6 (100%)" in second
    assert "misses (upstream calls)  0" in second
    assert "Every answer came from the cache" in second
    assert "[L1:sqlite]" in second
