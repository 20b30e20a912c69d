"""The API's interactive docs in a real browser with the network blocked: `emorec serve` on loopback,
headless Chromium (Playwright) allowed to reach that server only. /docs must render every endpoint
from files the server serves itself, asking nothing of any other host."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import stop_process
from test_api import free_port

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ENDPOINTS = ["/predict", "/predict/batch", "/health", "/model"]


@pytest.fixture(scope="module")
def server(tiny_onnx, yunet_path, tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found (apt-get install -y chromium)")
    port = free_port()
    log = (tmp_path_factory.mktemp("serve") / "server.log").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "emorec", "serve", "--model", str(tiny_onnx), "--host",
                             "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "EMOREC_YUNET": str(yunet_path)})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 45
        while True:
            assert proc.poll() is None, f"server exited early:\n{Path(log.name).read_text()[-2000:]}"
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not answer /health within 45 s"
            time.sleep(0.2)
        yield base
    finally:
        stop_process(proc)
        log.close()


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
