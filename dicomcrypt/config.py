"""Options declared once: the command line, the ``--config`` TOML file and the defaults derive from them.

A command lists its options as :class:`Option` objects. From that one list, :func:`add_arguments`
builds the argparse arguments, :func:`read_table` checks a TOML table, and :func:`resolve` fills
the parsed namespace with the precedence command line > config file > built-in default. A value
from the file goes through the same checks as the same value typed on the command line (its
type, its choices, the option's own ``parse`` such as a port range or ``AET@host:port``), so a
bad file is reported as :class:`ConfigError` naming the file, the table, the key and what is
allowed, never as a traceback halfway through the run.

The file is checked as a whole: a table no command reads (``[sevre]``) or a key no option
declares is an error naming it, with the nearest known name ("did you mean [serve]?"), and the
tables of the other commands are checked too, so one file can serve ``serve``, ``send`` and
``echo`` and a typo in any of them is reported by the first command that reads it.

The file has one table per command; keys are the long option names (``allow-aet`` or
``allow_aet``)::

    [serve]
    port = 11112
    aet = "RECEIVER"
    key = ["/etc/dicomcrypt/site.key"]
    out = "/data/incoming"
    allow-aet = ["SENDER", "MODALITY1"]
"""

from __future__ import annotations

import argparse
import difflib
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dicomcrypt.errors import ConfigError

_TYPE_NAMES = {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}

_TABLES: dict[str, Sequence[Option]] = {}
"""Every config table a command declared (by :func:`add_arguments`) and its options: what a
file may hold. The command line builds every command's parser, so all are known when one runs."""


class Option:
    """One option of a command: its flags, value type, default, checks and help.

    ``type`` is the value's type (``str``, ``int``, ``float``; ``bool`` for a switch) and what a
    file must give; ``parse`` turns command-line text into the value and rejects bad text
    (argparse's ``type=``; defaults to ``type``); file values go through it too. ``repeatable``
    options collect a list (``action="append"``; in a file, a string or a list of strings).
    ``negatable`` switches get ``--no-NAME`` too. ``default`` may be a function of no arguments,
    called only when the default is needed (``--jobs``: the CPU count). ``in_file=False`` keeps an
    option to the command line (``--retry-failed``).
    """

    def __init__(
        self,
        *flags: str,
        help: str,
        type: type = str,
        parse: Callable[[str], Any] | None = None,
        default: Any = None,
        choices: Sequence[str] | None = None,
        metavar: str | None = None,
        repeatable: bool = False,
        negatable: bool = False,
        group: str | None = None,
        in_file: bool = True,
    ) -> None:
        self.flags = flags
        self.help = help
        self.type = type
        self.parse = parse or (None if type is bool else type)
        self.default = default
        self.choices = tuple(choices) if choices is not None else None
        self.metavar = metavar
        self.repeatable = repeatable
        self.negatable = negatable
        self.group = group
        self.in_file = in_file

    @property
    def name(self) -> str:
        """The long option name without its leading dashes (``allow-aet``); also its key in a config file."""
        return self.flags[0].removeprefix("--")

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    def default_value(self) -> Any:
        if self.repeatable and self.default is None:
            return []
        return self.default() if callable(self.default) else self.default

    def add_to(self, parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
        """Add the argparse argument; its default is None so :func:`resolve` can tell "not given"."""
        kwargs: dict[str, Any] = {"default": None, "help": self.help}
        if self.type is bool:
            kwargs["action"] = argparse.BooleanOptionalAction if self.negatable else "store_true"
        else:
            kwargs.update(type=self.parse, choices=self.choices, metavar=self.metavar)
            if self.repeatable:
                kwargs["action"] = "append"
        parser.add_argument(*self.flags, **kwargs)

    def from_file(self, raw: Any) -> Any:
        """The value a config file gives, checked as the command line checks it; ValueError if bad."""
        if self.type is bool:
            if not isinstance(raw, bool):
                raise ValueError("must be true or false")
            return raw
        if self.repeatable:
            items = [raw] if isinstance(raw, str) else raw
            if not isinstance(items, list) or not all(_is_instance(i, str) or _is_instance(i, int) for i in items):
                raise ValueError("must be a string or a list of strings")
            return [self._checked(str(i)) for i in items]
        if not _is_instance(raw, self.type):
            raise ValueError(f"must be {_TYPE_NAMES[self.type]}")
        return self._checked(str(raw))

    def _checked(self, text: str) -> Any:
        try:
            value = self.parse(text) if self.parse is not None else text
        except (argparse.ArgumentTypeError, ValueError) as exc:
            raise ValueError(str(exc) or f"must be {_TYPE_NAMES[self.type]}") from None
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.choices)}")
        return value


def _is_instance(raw: Any, expected: type) -> bool:
    if isinstance(raw, bool):  # TOML true is not the number 1
        return expected is bool
    if expected is float:
        return isinstance(raw, (int, float))
    return isinstance(raw, expected)


def add_arguments(parser: argparse.ArgumentParser, options: Sequence[Option], *, table: str | None) -> None:
    """Add ``options`` to ``parser`` (in argument groups by ``Option.group``), and ``--config``
    for commands with a ``[table]`` (``table=None``: a command without a config file)."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for option in options:
        if option.group is None:
            option.add_to(parser)
        else:
            if option.group not in groups:
                groups[option.group] = parser.add_argument_group(option.group)
            option.add_to(groups[option.group])
    if table is not None:
        _TABLES[table] = options
        parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                            help=f"TOML file whose [{table}] table sets defaults for these options")


def _load_document(path: str | Path) -> dict[str, Any]:
    """The whole TOML document of ``path``; ConfigError if missing or not TOML."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r}: cannot read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None


def _did_you_mean(name: str, known: Sequence[str], brackets: bool = False) -> str:
    """`` (did you mean 'serve'?)`` when a known name is close to ``name``; else empty."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    if not close:
        return ""
    return f" (did you mean [{close[0]}]?)" if brackets else f" (did you mean {close[0]!r}?)"


def _check_table(path: str | Path, table: str, section: Any, options: Sequence[Option]) -> dict[str, Any]:
    """One table checked against its options: ``{dest: value}``. Raises ConfigError."""
    if not isinstance(section, dict):
        raise ConfigError(f"config file {str(path)!r}: [{table}] must be a table")
    settable = {option.dest: option for option in options if option.in_file}
    values: dict[str, Any] = {}
    for key, raw in section.items():
        option = settable.get(key.replace("-", "_"))
        if option is None:
            names = sorted(option.name for option in settable.values())
            hint = _did_you_mean(key.replace("_", "-"), names)
            raise ConfigError(
                f"config file {str(path)!r}: [{table}] has unknown setting {key!r}{hint} (known: {', '.join(names)})"
            )
        try:
            values[option.dest] = option.from_file(raw)
        except ValueError as exc:
            raise ConfigError(f"config file {str(path)!r}: [{table}] {option.name} = {raw!r}: {exc}") from None
    return values


def read_table(path: str | Path, table: str, options: Sequence[Option]) -> dict[str, Any]:
    """``[table]`` of ``path`` checked against ``options``: ``{dest: value}``. Raises ConfigError.

    The whole file is checked: unknown tables and unknown keys are errors (with the nearest
    known name), and so is a bad value in another command's table, so a typo in a hospital's
    config file is reported rather than silently ignored.
    """
    known = {**_TABLES, table: options}
    document = _load_document(path)
    for name, section in document.items():
        if name not in known:
            hint = _did_you_mean(name, sorted(known), brackets=True)
            raise ConfigError(
                f"config file {str(path)!r}: unknown table [{name}]{hint} (known: "
                f"{', '.join(f'[{t}]' for t in sorted(known))})"
            )
        if name != table:
            _check_table(path, name, section, known[name])
    return _check_table(path, table, document.get(table, {}), options)


def resolve(args: argparse.Namespace, options: Sequence[Option], *, table: str | None) -> None:
    """Fill each option the command line left unset from ``args.config``'s ``[table]``, else its
    default. Raises ConfigError for a bad file."""
    config = getattr(args, "config", None)
    from_file = read_table(config, table, options) if config is not None and table is not None else {}
    for option in options:
        if getattr(args, option.dest) is None:
            value = from_file[option.dest] if option.dest in from_file else option.default_value()
            setattr(args, option.dest, value)

