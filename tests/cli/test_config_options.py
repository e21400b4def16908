"""Options declared once (``dicomcrypt.config.Option``): the command line, the ``--config`` file
and the defaults of ``serve``, ``send`` and ``echo`` all derive from each command's ``OPTIONS``.

A value from the file passes the same checks as on the command line; a bad one is exit 3 with
a message naming the file, the table, the key and what is allowed, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import pytest

from dicomcrypt.cli import echo, send, serve
from dicomcrypt.cli.main import _setup_argparser, main
from dicomcrypt.config import read_table, resolve
from dicomcrypt.errors import ConfigError

COMMANDS = {"serve": serve.OPTIONS, "send": send.OPTIONS, "echo": echo.OPTIONS}
PEER = "RECEIVER@127.0.0.1:1"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def _argv(command: str, *options: str) -> list[str]:
    """A command line that gets as far as reading the options (it fails later, if at all)."""
    positional = {"serve": [], "send": [PEER, "missing-input"], "echo": [PEER]}[command]
    return [command, *options, *positional]


def _config(tmp_path: Path, table: str, body: str) -> str:
    path = tmp_path / f"{table}.toml"
    path.write_text(f"[{table}]\n{body}\n")
    return str(path)


def _parse(*argv: str) -> argparse.Namespace:
    return _setup_argparser().parse_args(list(argv))


def _subparser(command: str) -> argparse.ArgumentParser:
    subparsers = next(a for a in _setup_argparser()._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices[command]


# --------------------------------------------------------------------------- bad values, file and command line

BAD_VALUES = [
    # command, file line, command-line flags, what the file message must name
    ("serve", 'log_level = "verbose"', ["--log-level", "verbose"], ["log-level = 'verbose'", "debug, info, warning"]),
    ("serve", 'store = "bogus"', ["--store", "bogus"], ["store = 'bogus'", "restored, encrypted"]),
    ("serve", 'port = "abc"', ["--port", "abc"], ["port = 'abc'", "must be a whole number"]),
    ("serve", "port = 70000", ["--port", "70000"], ["port = 70000", "from 0 to 65535"]),
    ("serve", 'duplicates = "x"', ["--duplicates", "x"], ["duplicates = 'x'", "keep-first, replace"]),
    ("serve", 'forward = "PACS"', ["--forward", "PACS"], ["forward = 'PACS'", "AET@host:port"]),
    ("serve", "max-associations = 0", ["--max-associations", "0"], ["max-associations = 0", "1 or more"]),
    ("send", "associations = 0", ["--associations", "0"], ["associations = 0", "1 or more"]),
    ("send", 'mode = "fast"', ["--mode", "fast"], ["mode = 'fast'", "lossless, lossy, standard"]),
    ("send", 'jobs = "many"', ["--jobs", "many"], ["jobs = 'many'", "must be a whole number"]),
    ("echo", 'timeout = "soon"', ["--timeout", "soon"], ["timeout = 'soon'", "must be a number"]),
    ("echo", 'tls = "yes"', None, ["tls = 'yes'", "must be true or false"]),
]


@pytest.mark.parametrize(("command", "line", "flags", "named"), BAD_VALUES, ids=[b[1] for b in BAD_VALUES])
def test_bad_value_in_config_file_is_exit_3_naming_key_and_allowed_values(tmp_path, capsys, command, line, flags,
                                                                          named):
    config = _config(tmp_path, command, line)
    assert main(_argv(command, "--config", config)) == 3
    err = capsys.readouterr().err
    assert err.startswith(f"dicomcrypt: error: config file {config!r}: [{command}] ")
    for fragment in named:
        assert fragment in err
    assert "Traceback" not in err


@pytest.mark.parametrize(("command", "line", "flags", "named"), [b for b in BAD_VALUES if b[2]],
                         ids=[b[1] for b in BAD_VALUES if b[2]])
def test_same_value_on_the_command_line_is_argparse_usage_error(capsys, command, line, flags, named):
    assert main(_argv(command, *flags)) == 2
    assert f"argument {flags[0]}" in capsys.readouterr().err


def test_config_errors_name_the_file_problem(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_table(tmp_path / "none.toml", "serve", serve.OPTIONS)
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_table(_config(tmp_path, "serve", "port = "), "serve", serve.OPTIONS)
    with pytest.raises(ConfigError, match=r"\[send\] has unknown setting 'progress'"):  # command line only
        read_table(_config(tmp_path, "send", "progress = true"), "send", send.OPTIONS)


def test_file_values_become_what_the_command_line_gives(tmp_path):
    from dicomcrypt.net.address import Peer

    config = _config(tmp_path, "serve", 'key = "site.key"\nallow_aet = ["A", "B"]\nforward = "PACS@10.0.0.5:104"\n'
                                        "stop-timeout = 5\naccept-plain = true")
    assert read_table(config, "serve", serve.OPTIONS) == {
        "key": ["site.key"], "allow_aet": ["A", "B"], "forward": Peer("PACS", "10.0.0.5", 104),
        "stop_timeout": 5.0, "accept_plain": True,
    }
    assert _parse("serve", "--forward", "PACS@10.0.0.5:104", "-k", "site.key").forward == Peer("PACS", "10.0.0.5", 104)


# --------------------------------------------------------------------------- precedence


def test_serve_precedence_command_line_over_file_over_receiver_default(tmp_path):
    from dicomcrypt.net.scp import ReceiverConfig

    base = ["serve", "--store", "encrypted", "--out", str(tmp_path / "vault")]
    config = _config(tmp_path, "serve", "max-associations = 4")
    assert serve._receiver_config(_parse(*base)).max_associations == ReceiverConfig.max_associations == 10
    assert serve._receiver_config(_parse(*base, "--config", config)).max_associations == 4
    assert serve._receiver_config(_parse(*base, "--config", config, "--max-associations", "7")).max_associations == 7


def test_serve_decode_limits_reach_the_receive_policy(tmp_path):
    from dicomcrypt.limits import MEBIBYTE, MEGAPIXEL, DecodeLimits

    base = ["serve", "--store", "encrypted", "--out", str(tmp_path / "vault")]
    assert serve._receiver_config(_parse(*base)).decode_limits == DecodeLimits()
    config = _config(tmp_path, "serve", "max-image-mb = 64")
    limits = serve._receiver_config(_parse(*base, "--config", config, "--max-model-megapixels", "5")).decode_limits
    assert (limits.max_pixel_bytes, limits.max_model_pixels) == (64 * MEBIBYTE, 5 * MEGAPIXEL)


def test_decrypt_takes_the_decode_limits():
    from dicomcrypt.limits import DEFAULT_IMAGE_MB

    args = _setup_argparser().parse_args(["decrypt", "-k", "site.key", "IN", "OUT", "--max-image-mb", "12"])
    assert (args.max_image_mb, _setup_argparser().parse_args(["decrypt", "-k", "k", "I", "O"]).max_image_mb) == (
        12, DEFAULT_IMAGE_MB,
    )


@pytest.mark.parametrize(("command", "flag", "value", "default"), [
    ("send", "--mode", "standard", "lossless"),
    ("send", "--associations", 3, 1),
    ("echo", "--aet", "FROMFILE", "DICOMCRYPT"),
    ("echo", "--timeout", 5.0, 30.0),
])
def test_send_echo_precedence_command_line_over_file_over_default(tmp_path, command, flag, value, default):
    options, name = COMMANDS[command], flag.removeprefix("--")
    dest = name.replace("-", "_")
    args = _parse(*_argv(command))
    resolve(args, options, table=command)
    assert getattr(args, dest) == default
    config = _config(tmp_path, command, f"{name} = {value!r}".replace("'", '"'))
    args = _parse(*_argv(command, "--config", config))
    resolve(args, options, table=command)
    assert getattr(args, dest) == value
    cli_value = {"--mode": "lossy", "--associations": "2", "--aet": "FROMCLI", "--timeout": "9"}[flag]
    args = _parse(*_argv(command, "--config", config, flag, cli_value))
    resolve(args, options, table=command)
    assert str(getattr(args, dest)).removesuffix(".0") == cli_value


# --------------------------------------------------------------------------- one declaration


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_is_in_the_help_and_the_file_schema(tmp_path, command):
    options = COMMANDS[command]
    parser = _subparser(command)
    help_text = parser.format_help()
    for option in options:
        for flag in option.flags:
            assert flag in help_text
        assert option.help.split(" (")[0][:40] in " ".join(help_text.split())
    # the parser has nothing the declarations do not say (besides positionals, --config, -v/-q and the
    # --log-format/--log-file every command takes, cli/main.py)
    dests = {action.dest for action in parser._actions}
    common = {"help", "config", "peer", "paths", "verbosity", "log_format", "log_file"}
    assert dests - {o.dest for o in options} <= common

    sample = {bool: "true", int: "1", float: "1.5"}
    lines = []
    for option in options:
        if not option.in_file:
            continue
        if option.choices:
            text = f'"{option.choices[0]}"'
        elif option.name == "forward":
            text = '"PACS@10.0.0.5:104"'
        elif option.name == "http":
            text = '"127.0.0.1:9110"'
        elif option.name == "uid-root":
            text = '"1.2.826.0.1.3680043.10.999"'
        else:
            text = sample.get(option.type, '"x"')
        lines.append(f"{option.name} = {text}")
    values = read_table(_config(tmp_path, command, "\n".join(lines)), command, options)
    assert sorted(values) == sorted(o.dest for o in options if o.in_file)


@pytest.mark.parametrize(("flag", "field"), [
    ("--host", "host"), ("--port", "port"), ("--aet", "ae_title"), ("--duplicates", "duplicates"),
    ("--max-associations", "max_associations"), ("--stop-timeout", "stop_timeout"),
    ("--max-image-mb", "max_image_mb"), ("--max-model-megapixels", "max_model_megapixels"),
    ("--output-syntax", "output_syntax"),
])
def test_serve_help_states_the_receiver_config_default(flag, field):
    """serve's receiver settings take ReceiverConfig's defaults; the help text must say the same."""
    from dicomcrypt.net.scp import ReceiverConfig

    default = {f.name: f.default for f in dataclasses.fields(ReceiverConfig)}[field]
    option = next(o for o in serve.OPTIONS if o.flags[0] == flag)
    assert option.default is None
    stated = f"(default: {default:g}" if isinstance(default, float) else f"(default: {default}"
    assert stated in option.help


@pytest.mark.parametrize("command", COMMANDS)
def test_docs_list_every_config_key(command):
    section = DOCS.read_text().split(f"## `{command}`", 1)[1].split("\n## ", 1)[0]
    paragraph = section.split("**Config file.**", 1)[1].split("\n\n", 1)[0]
    listed = set(re.findall(r"`([a-z-]+)`", paragraph))
    assert {o.name for o in COMMANDS[command] if o.in_file} <= listed, paragraph
