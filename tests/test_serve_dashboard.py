"""The dashboard in a real browser: Debian's chromium, driven by Playwright."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from conftest import MODEL, chat

from llmcache.tools.simulator import Simulator
from tests.serve_fixtures import ServeProcess, start_serve
from tests.servers import require_binary, unavailable


@pytest.fixture
def proxy(sim: Simulator, tmp_path: Path) -> Iterator[ServeProcess]:
    process = start_serve(sim, tmp_path, "--tier", "memory://")
    yield process
    process.stop()


def test_the_dashboard_updates_live_as_requests_go_through(
    proxy: ServeProcess, tmp_path: Path
) -> None:
    chromium = require_binary("chromium")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        unavailable("playwright (pip install playwright)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(proxy.url + "/")
            expect(page.locator("#live")).to_have_text("live", timeout=15_000)
            expect(page.locator("#requests")).to_have_text("0")
            expect(page.locator("#cost-saved")).to_have_text("$0")
            loaded = page.evaluate("performance.timeOrigin")

            client = openai.OpenAI(api_key="sk-k", base_url=proxy.url + "/v1", max_retries=0)
            for question in ("What is a cache?", "What is a tier?", "What is a cache?"):
                client.chat.completions.create(**chat(question))
            list(client.chat.completions.create(**chat("What is a tier?"), stream=True))
            client.embeddings.create(model="text-embedding-3-small", input="x")

            expect(page.locator("#requests")).to_have_text("5", timeout=15_000)
            expect(page.locator("#hits")).to_have_text("2")
            expect(page.locator("#hit-rate")).to_have_text("40.0%")
            assert page.locator("#tokens-saved").inner_text() != "0"
            assert page.locator("#cost-saved").inner_text().startswith("$0.0000")
            rows = page.locator("#recent tbody tr")
            expect(rows).to_have_count(5)
            newest = rows.nth(0).inner_text()
            assert "embeddings" in newest
            assert "miss" in newest
            expect(rows.nth(1)).to_contain_text("hit")
            expect(rows.nth(1)).to_contain_text("(stream)")
            expect(rows.nth(1)).to_contain_text("L1:memory")
            expect(page.locator("#models tbody")).to_contain_text(MODEL)
            expect(page.locator("#tiers tbody")).to_contain_text("L1:memory")
            assert page.evaluate("performance.timeOrigin") == loaded  # no reload
            shot = os.environ.get("LLMCACHE_DASHBOARD_PNG") or str(tmp_path / "dashboard.png")
            page.screenshot(path=shot, full_page=True)
            assert Path(shot).stat().st_size > 10_000
        finally:
            browser.close()
