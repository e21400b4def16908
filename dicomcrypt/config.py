"""Settings from a TOML file, for commands a site runs the same way every day (``serve``, ``send``).

The file has one table per command; keys are the command's long option names (``allow-aet`` or
``allow_aet``). Command-line flags win over the file, the file wins over built-in defaults. For
that to work, every option a file may set has ``default=None`` in argparse and its built-in
default is applied after :func:`merge_config`.

Example::

    [serve]
    port = 11112
    aet = "RECEIVER"
    key = ["/etc/dicomcrypt/site.key"]
    out = "/data/incoming"
    allow-aet = ["SENDER", "MODALITY1"]
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dicomcrypt.errors import InvalidInputError


class ConfigError(InvalidInputError):
    """The config file is missing, is not valid TOML, or has an unknown or mistyped setting."""


def load_table(path: str | Path, table: str) -> dict[str, Any]:
    """The ``[table]`` of a TOML file with keys normalised to argparse ``dest`` names."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            document = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    section = document.get(table, {})
    if not isinstance(section, dict):
        raise ConfigError(f"config file {str(path)!r}: [{table}] must be a table")
    return {key.replace("-", "_"): value for key, value in section.items()}


def _check_type(path: Path, table: str, key: str, value: Any, expected: type) -> Any:
    if expected is list:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, (str, int)) for v in value):
            return [str(v) for v in value]
    elif expected is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif expected is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif isinstance(value, expected):
        return value
    raise ConfigError(
        f"config file {str(path)!r}: [{table}] {key.replace('_', '-')} must be "
        f"{'a list of strings' if expected is list else expected.__name__}, not {type(value).__name__}"
    )


def merge_config(args: argparse.Namespace, table: str, settings: Mapping[str, type]) -> None:
    """Fill the options of ``args`` left unset (``None``) from ``args.config``'s ``[table]``.

    ``settings`` maps each dest name a file may set to its type (``str``, ``int``, ``float``,
    ``bool`` or ``list`` for repeatable options). Unknown keys are an error, so a typo in a
    hospital's config file is reported rather than silently ignored.
    """
    config_path = getattr(args, "config", None)
    if config_path is None:
        return
    values = load_table(config_path, table)
    for key, value in values.items():
        if key not in settings:
            known = ", ".join(sorted(k.replace("_", "-") for k in settings))
            raise ConfigError(
                f"config file {str(config_path)!r}: [{table}] has unknown setting "
                f"{key.replace('_', '-')!r} (known: {known})"
            )
        value = _check_type(Path(config_path), table, key, value, settings[key])
        if getattr(args, key, None) is None:
            setattr(args, key, value)
