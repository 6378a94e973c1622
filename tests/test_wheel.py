"""webchat as users install it: the wheel and the sdist built from this checkout, the wheel
installed (not editable) into a fresh virtualenv with its dependencies, and `webchat serve`
from that virtualenv chatting with a customer in Chromium over CometD WebSocket.

The browser's CometD client is vendored from npm by scripts/setup into a git-ignored folder,
which the build would quietly leave out; these tests prove it is shipped, and that a build or a
server without it says so instead of degrading every chat to REST polling.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect
from prometheus_client.parser import text_string_to_metric_families

from tests import test_browser
from tests.live_server import LiveServer, live_server
from tests.polling import eventually
from tests.test_browser import (
    open_page,
    open_tab,
    say,
    service_ready,
    start_chat,
    transport_in_use,
    widget,
)
from webchat import __version__, locale
from webchat.web import vendor

ROOT = Path(__file__).resolve().parent.parent
WEB = "webchat/web/static/"
# The files the wheel must carry besides the tracked ones under src/webchat: what scripts/setup
# vendored (every module of the CometD client and its licence), as this checkout has it.
VENDORED = sorted(f"{WEB}vendor/{p.relative_to(vendor.VENDOR)}"
                  for p in vendor.VENDOR.rglob("*") if p.is_file())
NOT_SHIPPED = ("webchat/web/package.json", "webchat/web/package-lock.json")
"""The npm manifest that pins the vendored client: build input, not served."""

browser = test_browser.browser
"""Headless Debian Chromium (the fixture of the browser tests)."""
needs_chromium = test_browser.pytestmark


def tracked(*paths: str) -> list[str]:
    """Files of this checkout git would put in a commit (tracked, or new and not ignored)."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard",
                          "--", *paths], cwd=ROOT, check=True, capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if (ROOT / line).is_file()]


def build(source: Path, out: Path, *targets: str) -> subprocess.CompletedProcess[str]:
    """``python -m build`` of ``source`` with the build backend of this environment."""
    return subprocess.run([sys.executable, "-m", "build", "--no-isolation", *targets,
                           "--outdir", str(out), str(source)],
                          capture_output=True, text=True, timeout=300)


@dataclass
class Dists:
    wheel: list[str]
    sdist: list[str]
    wheel_path: Path


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    """The sdist and, built from it (as ``python -m build`` does), the wheel."""
    out = tmp_path_factory.mktemp("dist")
    done = build(ROOT, out)
    assert done.returncode == 0, done.stdout + done.stderr
    wheel = out / f"webchat-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as z:
        wheel_names = z.namelist()
    with tarfile.open(out / f"webchat-{__version__}.tar.gz") as t:
        sdist_names = [m.name for m in t.getmembers() if m.isfile()]
    return Dists(wheel_names, sdist_names, wheel)


def test_the_wheel_carries_everything_the_browser_and_the_server_need(dists: Dists) -> None:
    names = set(dists.wheel)
    # The vendored CometD client, every module and its licence.
    assert VENDORED and {f"{WEB}vendor/{name}" for name in vendor.REQUIRED} <= set(VENDORED)
    assert sorted(n for n in names if n.startswith(f"{WEB}vendor/")) == VENDORED
    # Our own pages and modules, the catalogs (read at run time, also for /webchat/i18n/*.json),
    # the typing marker, the licence.
    for page in ("index.html", "agent.html", "webchat.js", "webchat-service.js", "cxbus.js"):
        assert f"{WEB}{page}" in names
    for lang in locale.LANGUAGES:
        assert f"webchat/locale/{lang}/LC_MESSAGES/webchat.po" in names
    assert "webchat/py.typed" in names
    assert f"webchat-{__version__}.dist-info/licenses/LICENSE" in names
    # In short: every file of the package in the repository, and nothing of npm's.
    ours = {name.removeprefix("src/") for name in tracked("src/webchat")} - set(NOT_SHIPPED)
    assert sorted(ours - names) == []
    assert [n for n in names if "node_modules" in n or n in NOT_SHIPPED] == []
    metadata = zipfile.ZipFile(dists.wheel_path).read(
        f"webchat-{__version__}.dist-info/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata


def test_the_sdist_carries_the_vendored_client_and_what_builds_the_wheel(dists: Dists) -> None:
    top = f"webchat-{__version__}/"
    names = {name.removeprefix(top) for name in dists.sdist}
    assert {f"src/{name}" for name in VENDORED} <= names
    assert {"LICENSE", "README.md", "pyproject.toml", "hatch_build.py"} <= names
    assert sorted(set(tracked("src", "tests", "docs", "scripts")) - names) == []
    assert [n for n in names if "node_modules" in n] == []


@pytest.mark.parametrize("target", ["sdist-then-wheel", "wheel"])
def test_a_build_without_the_vendored_client_fails_and_says_why(tmp_path: Path,
                                                                target: str) -> None:
    """A clone where scripts/setup has not run: no package rather than one that degrades."""
    clone = tmp_path / "clone"
    for name in tracked():
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, clone / name)
    done = build(clone, tmp_path / "dist", *(["--wheel"] if target == "wheel" else []))
    assert done.returncode != 0
    assert "the browser's CometD client is not vendored: cometd/cometd.js, cometd/LICENSE " \
           "missing" in done.stderr + done.stdout
    assert not (tmp_path / "dist").exists() or list((tmp_path / "dist").iterdir()) == []


@dataclass
class Installed:
    venv: Path
    env: dict[str, str]
    static: Path

    @property
    def webchat(self) -> list[str]:
        return [str(self.venv / "bin" / "webchat")]


@pytest.fixture(scope="module")
def installed(dists: Dists, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel in a new virtualenv (no system site-packages), dependencies from the package
    index (pip's cache makes it a few seconds), run with nothing of this checkout on its path."""
    venv = tmp_path_factory.mktemp("venv")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    made = time.monotonic()
    done = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet",
                           str(dists.wheel_path)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    print(f"virtualenv {made - started:.1f} s, pip install of the wheel and its dependencies "
          f"{time.monotonic() - made:.1f} s")
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import webchat.web; print(webchat.web.STATIC)"],
        env=env, cwd=venv, check=True, capture_output=True, text=True).stdout.strip()
    static = Path(where)
    assert static.is_relative_to(venv), static  # the installed copy, not this checkout
    return Installed(venv, env, static)


@contextmanager
def serving(installed: Installed, data: Path) -> Iterator[tuple[str, LiveServer]]:
    """``webchat serve --with-bot`` from the virtualenv, data and log in ``data``."""
    data.mkdir()
    with live_server(LiveServer, data, "--with-bot", webchat=installed.webchat,
                     env=installed.env) as server:
        yield f"http://127.0.0.1:{server.port}", server


def cometd_frames(context: BrowserContext) -> list[str]:
    """What the context's pages receive over WebSocket (listening from each page's creation,
    before it loads anything)."""
    frames: list[str] = []
    context.on("page", lambda page: page.on("websocket", lambda ws: ws.on(
        "framereceived", lambda payload: frames.append(f"{ws.url} {payload!s}"))))
    return frames


async def agents_ready(page: Page, base: str) -> bool:
    """Whether the server's /metrics count an agent ready (the bot logs in after the server
    listens, and its password hash takes a while on a loaded machine)."""
    metrics = await (await page.request.get(f"{base}/metrics")).text()
    return any(sample.value >= 1 for family in text_string_to_metric_families(metrics)
               if family.name == "webchat_agents_ready" for sample in family.samples)


@needs_chromium
async def test_installed_from_the_wheel_it_chats_over_cometd_websocket_in_chromium(
        installed: Installed, browser: Browser, tmp_path: Path) -> None:
    with serving(installed, tmp_path / "data") as (base, server):
        context = await browser.new_context()
        frames = cometd_frames(context)
        page = await open_tab(context, f"{base}/?transport=websocket")
        await eventually(lambda: agents_ready(page, base), "the echo bot ready", 120)
        await start_chat(page)
        await say(page, "Hello from the wheel")
        # The server's echo bot answers, and the answer came over CometD's WebSocket.
        await expect(widget(page).locator(".msg.Agent").last).to_contain_text(
            "You said: Hello from the wheel")
        assert await transport_in_use(page) == "websocket"
        assert any(frame.startswith(f"ws://127.0.0.1:{server.port}/genesys/cometd ")
                   and "You said: Hello from the wheel" in frame for frame in frames), frames
        # The installed catalogs answer the widget's strings as this checkout's do.
        strings = await page.request.get(f"{base}/webchat/i18n/fr.json")
        assert await strings.json() == locale.widget_strings("fr")
        assert page.errors == []  # type: ignore[attr-defined]
        await context.close()
        log = server.log.read_text()
        assert "Traceback" not in log and " ERROR " not in log, log


@needs_chromium
async def test_an_installation_without_the_client_says_so_in_its_log_and_the_console(
        installed: Installed, browser: Browser, tmp_path: Path) -> None:
    """Someone deleted static/vendor from an installation (or packaged it by hand): the widget
    still chats, over REST polling, and both the server and the page say why, loudly."""
    moved = tmp_path / "vendor"
    shutil.move(installed.static / "vendor", moved)
    try:
        with serving(installed, tmp_path / "data") as (base, server):
            page = await open_page(browser, f"{base}/?transport=websocket")
            await service_ready(page)
            assert await transport_in_use(page) == "rest"
            errors = [e for e in page.errors  # type: ignore[attr-defined]
                      if not e.startswith("Failed to load resource")]
            assert errors == [
                "webchat: the CometD client did not load (Failed to fetch dynamically imported "
                f"module: {base}/webchat/vendor/cometd/cometd.js); using REST polling"]
            assert ("ERROR webchat.web: the browser's CometD client is missing (cometd/cometd.js, "
                    f"cometd/LICENSE not in {installed.static / 'vendor'}): every customer's "
                    "widget will chat over REST polling") in server.log.read_text()
            await page.context.close()
    finally:
        shutil.move(moved, installed.static / "vendor")
