"""The API's interactive docs in a real browser with the network blocked: `emorec serve` on loopback,
headless Chromium (Playwright) allowed to reach that server only. /docs must render every endpoint
from files the server serves itself, asking nothing of any other host."""
from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from conftest import emorec_server

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ENDPOINTS = ["/predict", "/predict/batch", "/health", "/model"]


@pytest.fixture(scope="module")
def server(tiny_onnx, yunet_path, tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found (apt-get install -y chromium)")
    with emorec_server(tiny_onnx, yunet_path, tmp_path_factory.mktemp("serve") / "server.log") as base:
        yield base


def test_docs_render_every_endpoint_offline(server):
    from playwright.sync_api import sync_playwright

    blocked: list[str] = []

    def only_loopback(route):
        if route.request.url.startswith(server):
            route.continue_()
        else:  # the network is blocked: a CDN request fails here, and is recorded
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM),
                                    args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.route("**/*", only_loopback)
            page.goto(server + "/docs")
            page.locator(".opblock-summary-path").first.wait_for(timeout=30_000)
            text = page.locator("body").inner_text()
        finally:
            browser.close()
    assert blocked == []
    for endpoint in ENDPOINTS:
        assert endpoint in text, (endpoint, text[:500])
    assert httpx.get(server + "/redoc").status_code == 404  # not offered: its bundle reaches for a CDN
