"""`webchat serve` as a newcomer runs it: a real process that says where everything is."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp

from tests.conftest import free_port


async def test_serve_names_the_demo_site_and_console_and_serves_them(tmp_path: Path) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "webchat", "serve", "--port", str(port), "--data-dir",
        str(tmp_path), "--service", "sales", "--node-id", "web-a", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    banner: list[str] = []
    try:
        async with asyncio.timeout(30):
            while not banner or not banner[-1].startswith("chat with it"):
                line = await proc.stdout.readline()
                assert line, f"serve exited early: {banner}"
                banner.append(line.decode().rstrip())
        base = f"http://127.0.0.1:{port}"
        text = "\n".join(banner)
        assert re.search(rf"^demo site +{re.escape(base)}/ ", text, re.M), text
        assert re.search(rf"^console +{re.escape(base)}/agent ", text, re.M), text
        assert re.search(r"^created agent account agent with password \S+$", text, re.M), text

        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/") as page:
                html = await page.text()
                assert page.status == 200
                assert "script-src 'self'" in page.headers["Content-Security-Policy"]
            # The demo page is told the service this server runs, and its prefix.
            assert '<html lang="en" data-service="sales" data-api-prefix="/genesys">' in html
            async with http.get(f"{base}/agent") as console:
                assert console.status == 200
                assert 'id="login"' in await console.text()
            async with http.get(f"{base}/webchat/webchat.js") as module:
                assert module.status == 200
                assert "javascript" in module.headers["Content-Type"]
            async with http.get(f"{base}/healthz") as health:  # who answered
                assert (await health.json())["node"] == "web-a"
                assert (await health.json())["pid"] == proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0  # a clean stop on SIGTERM
