"""Generate docs/conformance.md from the reference list, the code and the test results.

    python scripts/conformance.py --junit artifacts/junit.xml            # rewrite the table
    python scripts/conformance.py --junit artifacts/junit.xml --check    # CI: fail on drift

The list is ``src/webchat/service/reference.py``: four plugins (WebChatService, WebChat,
main, CXBus), one section of the table each. A test proves an item when it carries
``@pytest.mark.conformance("<key>")`` and every one of its cases passed in the JUnit report.
Tests in modules named for the browser (``tests/test_browser*.py``,
``tests/test_*_browser.py``) are the *browser* evidence (Chromium), the others the *Python*
evidence. What an item needs, by its ``scope``:

* ``python``: implemented in Python (a config option the service reads, a command the plugin
  registers, an event it declares, a method of the bus) and a passing Python test;
* ``browser``: a passing browser test (it exists only in the page);
* ``both``: implemented in Python and a passing Python test, and for every plugin but
  WebChatService also a passing browser test (the page's bus is a second implementation;
  WebChatService's browser half shares the protocol core and its fixtures with Python).

Strings (kind ``string``) are proved by any passing test marked with the key or with the
plugin's wildcard ``"<plugin>.string:*"`` (one test checks every key in every shipped
language); a wildcard is allowed for no other kind.

``--check`` fails when an implemented item has no proof, when a test names an item the
reference does not list (or a wildcard of another kind), or when the checked-in table differs
from what the code and tests say now. ``--strict`` also fails on any item that needs a Python
implementation and has none.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from webchat.bus import Bus, Plugin  # noqa: E402
from webchat.service import reference  # noqa: E402
from webchat.service.config import KNOWN_OPTIONS  # noqa: E402
from webchat.service.plugin import COMMANDS, EVENTS  # noqa: E402

TABLE = ROOT / "docs" / "conformance.md"
BROWSER_MODULE = re.compile(r"^tests\.test_(?:browser\w*|\w+_browser)::")
"""Test modules so named run in Chromium."""
WILDCARD = re.compile(r"^(?:(?P<plugin>\w+)\.)?(?P<kind>\w+):\*$")


def marked_tests(tests_dir: Path) -> dict[str, set[str]]:
    """Item key -> test ids ("module::function") carrying the conformance marker."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in sorted(tests_dir.glob("test_*.py")):
        module = f"tests.{path.stem}"
        tree = ast.parse(path.read_text(), str(path))
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for deco in node.decorator_list:
                if (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute)
                        and deco.func.attr == "conformance"):
                    for arg in deco.args:
                        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                            found[arg.value].add(f"{module}::{node.name}")
    return found


def passing_tests(junit: Path) -> set[str]:
    """Test ids whose every case (all parametrizations) passed."""
    outcome: dict[str, bool] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        test_id = f"{case.get('classname')}::{(case.get('name') or '').split('[')[0]}"
        ok = not any(child.tag in ("failure", "error", "skipped") for child in case)
        outcome[test_id] = outcome.get(test_id, True) and ok
    return {test_id for test_id, ok in outcome.items() if ok}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def implemented(item: reference.Item) -> bool | None:
    """Whether the Python code has the item; None where Python has no say (page-only)."""
    if item.plugin == "CXBus":
        attr = _snake(item.name)
        return hasattr(Bus, attr) or hasattr(Plugin, attr)
    if item.plugin != "WebChatService":
        return None
    if item.kind == "option":
        return item.name in KNOWN_OPTIONS
    if item.kind == "command":
        return item.name in COMMANDS
    return item.name in EVENTS


def _wildcard(item: reference.Item) -> str:
    prefix = "" if item.plugin == "WebChatService" else f"{item.plugin}."
    return f"{prefix}{item.kind}:*"


def _is_browser(test_id: str) -> bool:
    return BROWSER_MODULE.match(test_id) is not None


@dataclass
class Row:
    item: reference.Item
    status: str
    proof: list[str]
    proved: bool
    missing: bool = False


@dataclass
class Report:
    text: str
    problems: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)


def judge(item: reference.Item, good: Sequence[str]) -> Row:
    """What the passing tests ``good`` (marked for ``item``) prove about it."""
    python = [t for t in good if not _is_browser(t)]
    browser = [t for t in good if _is_browser(t)]
    if item.kind in reference.WILDCARD_KINDS:
        return Row(item, "present" if good else "NOT PROVED", list(good), bool(good))
    if item.scope == "browser":
        return Row(item, "implemented (browser)" if browser else "browser, NOT PROVED",
                   browser, bool(browser))
    if not implemented(item):
        return Row(item, "missing", [], False, missing=True)
    if item.scope == "python":
        return Row(item, "implemented" if python else "implemented, NOT PROVED", python,
                   bool(python))
    needs_browser = item.plugin != "WebChatService"
    if needs_browser:
        if python and browser:
            return Row(item, "implemented (Python and browser)", [*python, *browser], True)
        lacking = " and ".join(n for n, ts in (("Python", python), ("browser", browser))
                               if not ts)
        return Row(item, f"implemented, {lacking} NOT PROVED", [*python, *browser], False)
    # WebChatService keeps its historical rule: the Python service and any passing test.
    return Row(item, "implemented" if good else "implemented, NOT PROVED", list(good),
               bool(good))


def build(junit: Path, tests_dir: Path | None = None,
          items: Sequence[reference.Item] | None = None) -> Report:
    items = reference.ALL if items is None else items
    marks = marked_tests(tests_dir or ROOT / "tests")
    passed = passing_tests(junit)
    keys = {item.key for item in items}
    wildcards = {_wildcard(item) for item in items if item.kind in reference.WILDCARD_KINDS}
    report = Report("")
    for key in sorted(set(marks) - keys):
        where = sorted(marks[key])
        if WILDCARD.match(key):
            if key not in wildcards:
                report.problems.append(f"{key}: marked in {where}, but only "
                                       f"{', '.join(sorted(wildcards)) or 'no kind'} may be "
                                       "proved in bulk")
        else:
            report.problems.append(f"{key}: marked in {where} but not in the reference list")
    for item in items:
        tests = set(marks.get(item.key, ()))
        if item.kind in reference.WILDCARD_KINDS:
            tests |= marks.get(_wildcard(item), set())
        row = judge(item, sorted(t for t in tests if t in passed))
        report.rows.append(row)
        if row.missing:
            report.missing.append(item.key)
        elif not row.proved:
            report.problems.append(f"{item.key}: {row.status.lower()}")
    report.text = render(report.rows)
    return report


def _count(rows: Iterable[Row]) -> tuple[int, int]:
    rows = list(rows)
    return sum(row.proved for row in rows), len(rows)


def render(rows: Sequence[Row]) -> str:
    proved, total = _count(rows)
    by_plugin = {p: [r for r in rows if r.item.plugin == p] for p in reference.PLUGINS}
    summary = ", ".join(f"{p} {a} of {b}" for p, (a, b) in
                        ((p, _count(rs)) for p, rs in by_plugin.items() if rs))
    out = [
        "# Genesys Widgets conformance",
        "",
        "Generated by `scripts/conformance.py` from `src/webchat/service/reference.py`, the",
        "code, and the JUnit report of the full test suite; do not edit by hand. Source: **R**",
        "the Genesys Widgets reference pages, **I** named by our issues, **D** ours. Scope:",
        "`both` = Python and browser, `browser` = needs a page (DOM), `python` = ours.",
        "Browser evidence is the Chromium suite (`tests/test_browser*.py`, `test_*_browser.py`);",
        "`browser` items need it, and so do the `both` items of every plugin but",
        "WebChatService. Strings are proved by the test that checks every key in every",
        "shipped language.",
        "",
        f"**{proved} of {total}** items implemented and proved by a passing test ({summary}).",
    ]
    for plugin, plugin_rows in by_plugin.items():
        if not plugin_rows:
            continue
        a, b = _count(plugin_rows)
        out += ["", f"## {plugin}", "", f"**{a} of {b}** proved.", "",
                "| kind | name | source | scope | status | proved by |",
                "|---|---|---|---|---|---|"]
        for row in plugin_rows:
            item = row.item
            proof = "<br>".join(f"`{t}`" for t in row.proof) or "—"
            out.append(f"| {item.kind} | `{item.name}` | {item.source} | {item.scope} "
                       f"| {row.status} | {proof} |")
    return "\n".join([*out, ""])


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--junit", type=Path, required=True)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--strict", action="store_true")
    args = parser.parse_args()
    report = build(args.junit)
    problems = list(report.problems)
    if args.strict:
        problems += [f"{key}: documented but not implemented" for key in report.missing]
    if args.check:
        if not TABLE.exists() or TABLE.read_text() != report.text:
            problems.append(f"{TABLE.relative_to(ROOT)} is out of date: run "
                            "scripts/conformance.py --junit <report> and commit it")
    else:
        TABLE.write_text(report.text)
    for problem in problems:
        print(f"conformance: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
