"""The browser's third-party code: the official CometD JavaScript client, copied from its npm
package by ``scripts/setup`` into ``static/vendor/cometd`` (git-ignored; its version is
pinned in ``web/package.json``). The package build (``hatch_build.py``) refuses to build
without it and the server complains loudly at start: without it every customer's widget
silently chats over REST polling instead of CometD.

Plain standard library on purpose: the build hook loads this file by path, without webchat's
dependencies.
"""

from __future__ import annotations

from pathlib import Path

VENDOR = Path(__file__).parent / "static" / "vendor"
REQUIRED = ("cometd/cometd.js", "cometd/LICENSE")
"""What must be there: the module the widget imports (it imports the rest of the package's
modules, all copied together) and the licence it is distributed under."""


def missing(vendor: Path = VENDOR) -> list[str]:
    """The required files absent from ``vendor``, as paths relative to it."""
    return [name for name in REQUIRED if not (vendor / name).is_file()]
