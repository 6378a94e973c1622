"""Form encoding for GMS requests: flat ``key=value`` pairs, maps flattened as ``userData[k]``.

GMS never repeats a form key (protocols.md §1.1), so a decoded form is a plain ``dict``; a
repeated key is a malformed request, which :func:`parse_form` reports instead of silently
keeping one of the values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlencode


class FormError(ValueError):
    """The body is not a well-formed GMS form."""


def flatten(fields: Mapping[str, object]) -> dict[str, str]:
    """Turn ``{"userData": {"k": "v"}, "a": 1}`` into ``{"userData[k]": "v", "a": "1"}``."""
    flat: dict[str, str] = {}
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            for sub, sub_value in value.items():
                if sub_value is not None:
                    flat[f"{key}[{sub}]"] = form_value(sub_value)
        else:
            flat[key] = form_value(value)
    return flat


def form_value(value: object) -> str:
    """How a JSON scalar is written in a form: booleans as true/false, null as empty."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def encode_form(fields: Mapping[str, object]) -> str:
    return urlencode(flatten(fields))


def parse_form(body: bytes | str, *, max_fields: int = 200) -> dict[str, str]:
    """Decode an urlencoded body strictly: bad UTF-8, repeated keys or too many fields raise."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text),
                          max_num_fields=max_fields, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormError(f"malformed form body: {exc}") from None
    return collect(pairs)


def collect(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            raise FormError(f"form key {key!r} given more than once")
        form[key] = value
    return form


def unflatten_map(form: Mapping[str, str], name: str) -> dict[str, str]:
    """Collect ``name[k]=v`` keys of a form into ``{k: v}``."""
    prefix = name + "["
    out: dict[str, str] = {}
    for key, value in form.items():
        if key.startswith(prefix) and key.endswith("]"):
            sub = key[len(prefix):-1]
            if not sub:
                raise FormError(f"empty key in {key!r}")
            out[sub] = value
    return out
