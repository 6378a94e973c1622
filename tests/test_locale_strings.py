"""The widget's localization set: the original's key names, in every language we ship."""

from __future__ import annotations

from typing import Any

import pytest

from webchat import locale
from webchat.service import reference


def _leaves(node: dict[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for key, value in node.items():
        out |= _leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
    return out


def _reference_strings() -> set[str]:
    """The WebChat string keys the reference list names (``WebChat.string:ChatTitle``)."""
    names: set[str] = set()
    for value in vars(reference).values():
        for item in value if isinstance(value, list | tuple) else ():
            key = getattr(item, "key", "")
            if isinstance(key, str) and key.startswith("WebChat.string:"):
                names.add(key.removeprefix("WebChat.string:"))
    return names


@pytest.mark.conformance("WebChat.string:*")
def test_every_original_string_key_is_served_in_every_language():
    served = {lang: _leaves(locale.widget_strings(lang)["webchat"]) for lang in locale.LANGUAGES}
    english = served["en"]
    # The 8.5 names a site's main.i18n overrides use, not ours (no "ChatFormPlaceholderRequired").
    assert {"ChatTitle", "ChatFormPlaceholderFirstName", "ChatFormPlaceholderSubject",
            "InviteTitle", "EndConfirmBody", "ConfirmCloseConfirm", "Errors.CriticalFault",
            "Errors.RestoredOffline", "AriaCharRemaining"} <= english
    assert not {"ChatFormPlaceholderRequired", "ChatFormPlaceholderOptional"} & english
    assert len(english) >= 97
    documented = _reference_strings()
    assert documented <= english, sorted(documented - english)
    for lang, keys in served.items():
        assert keys == english, (lang, sorted(english ^ keys))
        own = locale.catalog(lang)  # translated there, not the English fallback
        assert all(own.get(f"webchat.{key}") for key in keys), lang
    assert "ar" in locale.LANGUAGES  # a right-to-left language


def test_the_agent_console_has_its_strings_in_every_language():
    english = _leaves(locale.widget_strings("en")["console"])
    assert {"LogIn", "Ready", "Queue", "Accept", "Send", "Transfer"} <= english
    for lang in locale.LANGUAGES:
        assert _leaves(locale.widget_strings(lang)["console"]) == english
    assert locale.widget_strings("ar")["console"]["LogIn"] != locale.widget_strings("en")[
        "console"]["LogIn"]
