"""Build hook: no wheel or sdist without the vendored CometD client (see webchat/web/vendor.py).

``static/vendor`` is git-ignored, so the build would otherwise leave it out quietly (the
``artifacts`` rule in pyproject.toml brings it in) or, on a clone where ``scripts/setup`` has
not run, ship a widget that falls back to REST polling for every customer.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from hatchling.builders.config import BuilderConfig
from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class VendoredClientCheck(BuildHookInterface[BuilderConfig]):

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        path = Path(self.root) / "src" / "webchat" / "web" / "vendor.py"
        spec = importlib.util.spec_from_file_location("_webchat_vendor", path)
        assert spec is not None and spec.loader is not None
        vendor = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(vendor)
        if absent := vendor.missing():
            raise RuntimeError(
                f"the browser's CometD client is not vendored: {', '.join(absent)} missing "
                f"in {vendor.VENDOR}. Run scripts/setup (it copies it from npm) before "
                "building; a package without it would make every customer's widget fall "
                "back to REST polling.")
