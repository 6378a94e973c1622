"""Where a command's options come from: the command line, ``WEBCHAT_<OPTION>``, a TOML file.

A deployment sets the same options three ways — flags for a quick try, environment variables
in a container, a file checked in beside the load balancer's — and a value given more
specifically wins: **command line > environment > config file > default**. Click already
orders its sources that way (command line, ``envvar``, ``ctx.default_map``, default); this
module gives every option its variable and turns the file into the default map.

Names, one rule for both: an option ``--data-dir`` is ``WEBCHAT_DATA_DIR`` in the environment
and ``data-dir`` (or ``data_dir``) in the file. A repeatable option takes a list in the file
and whitespace-separated values in its variable; a flag takes true/false (``1``/``0``,
``yes``/``no`` in a variable).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import click

ENV_PREFIX = "WEBCHAT_"
CONFIG_OPTION = "config"


def option_name(param: click.Option) -> str:
    """An option's name without dashes: ``data-dir`` for ``--data-dir``. The long flag, not
    the parameter's Python name (``--service`` fills ``services``): it is what users see."""
    longs = [opt for opt in param.opts if opt.startswith("--")]
    return (longs[0] if longs else param.opts[0]).lstrip("-")


def env_name(param: click.Option) -> str:
    return ENV_PREFIX + option_name(param).upper().replace("-", "_")


def configurable(command: click.Command) -> click.Command:
    """Give every option of ``command`` its ``WEBCHAT_<OPTION>`` variable (shown in
    ``--help``) and add ``--config FILE``. Apply it after the ``@click.option`` decorators."""
    for param in command.params:
        if isinstance(param, click.Option) and param.envvar is None:
            param.envvar = env_name(param)
            param.show_envvar = True
    config = click.Option(
        [f"--{CONFIG_OPTION}"], type=click.Path(dir_okay=False, path_type=Path),
        is_eager=True, expose_value=False, callback=_load_config, envvar=f"{ENV_PREFIX}CONFIG",
        show_envvar=True,
        help="A TOML file of options: keys are option names (data-dir or data_dir), a list "
             "for a repeatable option. The command line, then WEBCHAT_<OPTION> variables, "
             "override it.")
    command.params.insert(0, config)
    return command


def _load_config(ctx: click.Context, param: click.Parameter, path: Path | None) -> None:
    """Eager: read before every other option, so that its values become their defaults."""
    if path is None:
        return
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}", ctx, param) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"{path} is not valid TOML: {exc}", ctx, param) from None
    ctx.default_map = {**(ctx.default_map or {}), **defaults_from(ctx.command, data, path)}


def defaults_from(command: click.Command, data: dict[str, Any], source: Path | str
                  ) -> dict[str, Any]:
    """A config file's table as click's default map (keyed by parameter name). An unknown key
    is an error, not ignored: a misspelt setting would silently run with its default."""
    options = {option_name(p).replace("-", "_"): p for p in command.params
               if isinstance(p, click.Option) and p.name != CONFIG_OPTION}
    defaults: dict[str, Any] = {}
    for key, value in data.items():
        param = options.get(key.replace("-", "_"))
        if param is None or param.name is None:
            known = ", ".join(sorted(k.replace("_", "-") for k in options))
            raise click.BadParameter(f"unknown setting {key!r} in {source}; known: {known}",
                                     param_hint=f"--{CONFIG_OPTION}")
        if param.multiple and not isinstance(value, list):
            value = [value]
        defaults[param.name] = value
    return defaults
