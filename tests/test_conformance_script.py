"""The rules of scripts/conformance.py, on a tiny synthetic test tree and JUnit report: what
proves an item of each scope and plugin, the string wildcard, and what --check refuses."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from webchat.service import reference
from webchat.service.reference import Item

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "conformance.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("conformance_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


ITEMS = [
    Item("command", "startChat", "R"),                                  # Python service, both
    Item("command", "noSuchCommand", "R"),                              # not implemented
    Item("option", "xhrFields", "R", "browser"),                        # WebChatService page-only
    Item("command", "open", "R", "browser", plugin="WebChat"),
    Item("event", "opened", "R", "browser", plugin="WebChat"),
    Item("string", "ChatTitle", "R", "browser", plugin="WebChat"),
    Item("string", "Errors.Generic", "R", "browser", plugin="WebChat"),
    Item("option", "i18n", "R", "browser", plugin="main"),
    Item("api", "registerEvents", "R", "both", plugin="CXBus"),
    Item("api", "republish", "R", "both", plugin="CXBus"),
    Item("api", "teleport", "R", "both", plugin="CXBus"),               # no such bus method
]

TESTS = {
    "test_service_x.py": """
@pytest.mark.conformance("command:startChat")
def test_start(): ...
@pytest.mark.conformance("CXBus.api:registerEvents", "CXBus.api:republish")
def test_bus_python(): ...
@pytest.mark.conformance("WebChat.string:*")
def test_every_string_in_every_language(): ...
@pytest.mark.conformance("WebChat.command:open")
async def test_open_from_python_proves_nothing(): ...
""",
    "test_browser_x.py": """
@pytest.mark.conformance("option:xhrFields")
async def test_page(): ...
@pytest.mark.conformance("WebChat.event:opened")
async def test_failing_in_chromium(): ...
@pytest.mark.conformance("CXBus.api:registerEvents")
async def test_bus_in_chromium(): ...
@pytest.mark.conformance("main.option:i18n")
async def test_parametrized(): ...
""",
    "test_widget_browser.py": """
@pytest.mark.conformance("WebChat.command:open")
async def test_open_in_chromium(): ...
""",
    "test_service_browserless.py": """
@pytest.mark.conformance("WebChat.event:opened")
async def test_python_side(): ...
""",
}

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
<testcase classname="tests.test_service_x" name="test_start"/>
<testcase classname="tests.test_service_x" name="test_bus_python"/>
<testcase classname="tests.test_service_x" name="test_every_string_in_every_language"/>
<testcase classname="tests.test_service_x" name="test_open_from_python_proves_nothing"/>
<testcase classname="tests.test_browser_x" name="test_page"/>
<testcase classname="tests.test_browser_x" name="test_failing_in_chromium"><failure/></testcase>
<testcase classname="tests.test_browser_x" name="test_bus_in_chromium"/>
<testcase classname="tests.test_browser_x" name="test_parametrized[en]"/>
<testcase classname="tests.test_browser_x" name="test_parametrized[fr]"><skipped/></testcase>
<testcase classname="tests.test_widget_browser" name="test_open_in_chromium"/>
<testcase classname="tests.test_service_browserless" name="test_python_side"/>
</testsuite></testsuites>
"""


def tree(tmp_path: Path, tests: dict[str, str]) -> tuple[Path, Path]:
    tests_dir = tmp_path / "tests"
    tests_dir.mkdir()
    for name, body in tests.items():
        (tests_dir / name).write_text("import pytest\n" + body)
    junit = tmp_path / "junit.xml"
    junit.write_text(JUNIT)
    return tests_dir, junit


def rows(script: ModuleType, tmp_path: Path, tests: dict[str, str] = TESTS) -> tuple:
    tests_dir, junit = tree(tmp_path, tests)
    report = script.build(junit, tests_dir, ITEMS)
    return {row.item.key: row for row in report.rows}, report


def test_each_scope_and_plugin_needs_its_own_evidence(script, tmp_path):
    got, report = rows(script, tmp_path)
    proved = {key for key, row in got.items() if row.proved}
    assert proved == {
        "command:startChat",            # implemented in Python, a passing test
        "option:xhrFields",             # page-only: a passing Chromium test
        "WebChat.command:open",         # the Chromium test, not the Python one
        "WebChat.string:ChatTitle",     # the wildcard test proves every string
        "WebChat.string:Errors.Generic",
        "CXBus.api:registerEvents",     # both: a Python and a Chromium test
    }
    assert got["WebChat.command:open"].proof == ["tests.test_widget_browser::test_open_in_chromium"]
    assert got["WebChat.event:opened"].status == "browser, NOT PROVED"  # its one test failed
    assert got["main.option:i18n"].status == "browser, NOT PROVED"      # one case skipped
    assert got["CXBus.api:republish"].status == "implemented, browser NOT PROVED"
    assert report.missing == ["command:noSuchCommand", "CXBus.api:teleport"]
    assert sorted(p.split(": ")[0] for p in report.problems) == sorted([
        "WebChat.event:opened", "main.option:i18n", "CXBus.api:republish"])


def test_the_table_has_a_section_and_a_count_per_plugin(script, tmp_path):
    _, report = rows(script, tmp_path)
    text = report.text
    assert "**6 of 11** items implemented and proved" in text
    assert "WebChatService 2 of 3, WebChat 3 of 4, main 0 of 1, CXBus 1 of 3" in text
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections == ["## WebChatService", "## WebChat", "## main", "## CXBus"]
    assert ("| string | `Errors.Generic` | R | browser | present "
            "| `tests.test_service_x::test_every_string_in_every_language` |") in text


@pytest.mark.parametrize(("marker", "complaint"), [
    ("WebChat.command:teleport", "not in the reference list"),
    ("command:*", "may be proved in bulk"),
    ("WebChat.command:*", "may be proved in bulk"),
    ("main.string:*", "may be proved in bulk"),   # main has no strings
])
def test_a_marker_the_reference_does_not_know_fails_the_check(script, tmp_path, marker,
                                                              complaint):
    tests = {**TESTS, "test_extra.py": f'@pytest.mark.conformance("{marker}")\ndef test_x(): ...\n'}
    _, report = rows(script, tmp_path, tests)
    assert any(p.startswith(f"{marker}:") and complaint in p for p in report.problems)


def test_the_real_reference_has_unique_keys_and_the_conventions():
    keys = [item.key for item in reference.ALL]
    assert len(keys) == len(set(keys))
    assert "event:disconnected" in reference.KEYS                # WebChatService: kind:name
    assert {"WebChat.command:open", "WebChat.option:chatButton.enabled",
            "WebChat.string:ChatTitle", "WebChat.string:Errors.ChatUnavailable",
            "main.option:i18n", "CXBus.api:registerEvents"} <= reference.KEYS
    assert len(reference.WEBCHAT_STRINGS) == 97                  # the 8.5 localization set
    assert {item.scope for item in reference.WEBCHAT + reference.MAIN} == {"browser"}
