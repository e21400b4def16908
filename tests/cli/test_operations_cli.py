"""Issue 15, operations: every error is an error message, the config file is checked whole,
logs are the service's, and what a service needs (exit-code help, completion, the systemd unit)
is real.

In-process through ``main`` unless a real program is the point (``systemd-analyze``, ``bash -n``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from dicomcrypt import Key
from dicomcrypt.cli.main import _setup_argparser, main
from dicomcrypt.logs import JsonFormatter, TextFormatter, configure
from helpers.dciodvfy import require_tool

REPO = Path(__file__).resolve().parents[2]
UNKNOWN_HOST = "RECEIVER@no-such-host.invalid:104"


def _config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "dicomcrypt.toml"
    path.write_text(text)
    return str(path)


# --------------------------------------------------------------------------- config checked whole


@pytest.mark.parametrize(("text", "expected"), [
    ("[sevre]\nport = 11112\n", "unknown table [sevre] (did you mean [serve]?)"),
    ('[serve]\nallow-aets = ["A"]\n', "[serve] has unknown setting 'allow-aets' (did you mean 'allow-aet'?)"),
    # another command's table is checked too: one file for serve, send and echo
    ('[serve]\nport = 11112\n[echo]\ntimeout = "soon"\n', "[echo] timeout = 'soon': must be a number"),
])
def test_a_misspelt_or_bad_config_stops_serve_with_exit_3_naming_it(tmp_path, capsys, text, expected):
    config = _config(tmp_path, text)
    assert main(["serve", "--config", config, "--port", "0", "--out", str(tmp_path / "in")]) == 3
    err = capsys.readouterr().err
    assert err.startswith(f"dicomcrypt: error: config file {config!r}: ") and expected in err, err
    assert not (tmp_path / "in").exists()


def test_serve_refuses_an_unwritable_output_folder_before_listening(tmp_path, capsys):
    key = tmp_path / "site.key"
    Key.generate().save(key)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["serve", "--port", "0", "--key", str(key), "--out", str(blocker / "incoming")]) == 3
    err = capsys.readouterr().err
    assert f"--out {blocker / 'incoming'}: cannot write there (Not a directory)" in err
    assert "Traceback" not in err


def test_serve_refuses_a_log_file_it_cannot_open(tmp_path, capsys):
    key = tmp_path / "site.key"
    Key.generate().save(key)
    log = tmp_path / "no-such-folder" / "serve.log"
    assert main(["serve", "--port", "0", "--key", str(key), "--out", str(tmp_path / "in"),
                 "--log-file", str(log)]) == 3
    assert f"log file {log}: cannot open for appending (No such file or directory)" in capsys.readouterr().err


def test_a_downstream_that_does_not_answer_is_a_warning_only(tmp_path, caplog):
    import socket

    from dicomcrypt import KeyRing
    from dicomcrypt.cli import serve
    from dicomcrypt.net.address import Peer
    from dicomcrypt.net.scp import ReceiverConfig

    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gateway = ReceiverConfig(ae_title="GATEWAY", keys=KeyRing([Key.generate()]), out=tmp_path / "in",
                             forward=Peer("PACS", "127.0.0.1", port)).checked()
    with caplog.at_level(logging.WARNING, logger="dicomcrypt.serve"):
        serve._check_before_listening(gateway)  # no exception: serving anyway
    assert f"downstream PACS@127.0.0.1:{port} does not answer C-ECHO now" in caplog.text
    assert "serving anyway" in caplog.text
    assert (tmp_path / "in").is_dir() and (tmp_path / "in" / "quarantine").is_dir()


# --------------------------------------------------------------------------- every error is an error message


@pytest.mark.parametrize("argv", [
    ["echo", UNKNOWN_HOST],
    ["send", "--plain", UNKNOWN_HOST, get_testdata_file("CT_small.dcm")],
])
def test_an_unknown_host_is_one_line_not_a_traceback(capsys, argv):
    assert main(argv) == 3
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    # the resolver's own words follow ("Name or service not known" here)
    assert lines[0].startswith("dicomcrypt: error: association with RECEIVER@no-such-host.invalid:104: "
                               "cannot connect to no-such-host.invalid:104: ")


def test_roundtrip_reports_a_file_pydicom_cannot_write_and_carries_on(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("SC_rgb_jpeg.dcm", "CT_small.dcm"):
        shutil.copy(get_testdata_file(name), folder / name)
    assert main(["roundtrip", "--mode", "standard", str(folder)]) == 1
    out = capsys.readouterr().out
    bad = next(line for line in out.splitlines() if line.startswith("SC_rgb_jpeg.dcm"))
    assert "FAILED pydicom cannot process it (TypeError" in bad
    good = next(line for line in out.splitlines() if line.startswith("CT_small.dcm"))
    assert good.rstrip().endswith("exact")
    assert "2 round trips" in out and "1 exact" in out and "1 failed" in out


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_an_insecure_key_file_warns_once_as_a_log_line(tmp_path, capsys):
    key = tmp_path / "site.key"
    Key.generate().save(key)
    key.chmod(0o644)
    out = tmp_path / "out"
    assert main(["encrypt", "--mode", "standard", "--key", str(key), "--jobs", "1",
                 get_testdata_file("CT_small.dcm"), str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("accessible by group or others") == 1, err
    assert f"dicomcrypt: warning: key file {key} is accessible by group or others (mode 0644)" in err
    assert "InsecureKeyFileWarning" not in err


# --------------------------------------------------------------------------- help, completion, aliases


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in _setup_argparser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_documents_its_exit_codes_and_takes_the_logging_options():
    for name, parser in _subparsers().items():
        help_text = parser.format_help()
        assert "exit codes:" in help_text and "  0 " in help_text, name
        for flag in ("-v", "-q", "--log-format", "--log-file"):
            assert flag in parser._option_string_actions, (name, flag)


def test_send_takes_lossy_as_encrypt_does():
    for command in (["send", UNKNOWN_HOST, "x.dcm"], ["encrypt", "-k", "k", "IN", "OUT"]):
        assert _setup_argparser().parse_args([*command, "--lossy"]).mode == "lossy"


def test_bash_completion_is_valid_bash_and_knows_every_command(tmp_path, capsys):
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    path = tmp_path / "dicomcrypt.bash"
    path.write_text(script)
    checked = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    for word in ("serve", "orthanc-script", "--require-called-aet", "--log-format", "--lossy"):
        assert word in script
    assert main(["completion", "zsh"]) == 0
    assert "#compdef dicomcrypt" in capsys.readouterr().out


# --------------------------------------------------------------------------- log formats


def _record(message: str, level: int = logging.INFO) -> logging.LogRecord:
    record = logging.LogRecord("dicomcrypt.serve", level, __file__, 1, message, None, None)
    record.created = 1764778804.125  # 2025-12-03T16:20:04.125Z (exact in binary)
    return record


def test_text_and_json_lines_carry_utc_time_with_its_zone():
    line = TextFormatter().format(_record('event=store calling_ae=SENDER comment="a b"'))
    assert line == '2025-12-03T16:20:04.125Z INFO dicomcrypt.serve event=store calling_ae=SENDER comment="a b"'
    entry = json.loads(JsonFormatter().format(_record('event=store sop=1.2\nforged comment="a b"')))
    assert entry["time"] == "2025-12-03T16:20:04.125Z" and entry["level"] == "info"
    assert entry["message"] == 'event=store sop=1.2\\nforged comment="a b"'  # a peer cannot start a line
    assert entry["fields"]["event"] == "store" and entry["fields"]["comment"] == "a b"


def test_log_file_is_watched_and_reopened(tmp_path):
    path = tmp_path / "serve.log"
    setup = configure(level=logging.INFO, fmt="json", file=path)
    try:
        logging.getLogger("dicomcrypt.test").info("first")
        path.rename(tmp_path / "serve.log.1")  # what logrotate does
        setup.reopen()
        logging.getLogger("dicomcrypt.test").info("second")
    finally:
        setup.restore()
    assert json.loads((tmp_path / "serve.log.1").read_text())["message"] == "first"
    assert json.loads(path.read_text())["message"] == "second"


# --------------------------------------------------------------------------- service files


@pytest.mark.peer
def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path):
    """The unit as shipped, with ExecStart pointing at this venv's real ``dicomcrypt`` (verify
    checks that the program exists; /opt/dicomcrypt is where docs/operations.md installs it)."""
    analyze = require_tool("systemd-analyze")
    program = Path(sys.executable).parent / "dicomcrypt"
    if not program.exists():
        pytest.skip(f"{program}: the package is not installed in this venv")
    shipped = (REPO / "contrib" / "systemd" / "dicomcrypt-serve.service").read_text()
    assert "ExecStart=/opt/dicomcrypt/bin/dicomcrypt serve" in shipped
    unit = tmp_path / "dicomcrypt-serve.service"
    unit.write_text(shipped.replace("/opt/dicomcrypt/bin/dicomcrypt", str(program)))
    verified = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    # verify exits 0 even for an unknown directive; it says so on stderr: both must be clean
    assert verified.returncode == 0 and verified.stderr.strip() == "", verified.stderr
    for directive in ("User=dicomcrypt", "ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes",
                      "ReadWritePaths=", "LoadCredential=site.key:", "--key %d/site.key"):
        assert directive in shipped

    typo = tmp_path / "typo.service"
    typo.write_text(unit.read_text().replace("ProtectSystem=", "ProtectSytem="))
    caught = subprocess.run([analyze, "verify", str(typo)], capture_output=True, text=True, timeout=60)
    assert "Unknown key 'ProtectSytem'" in caught.stderr  # the check above is not vacuous


def test_the_sample_service_config_is_valid_as_shipped():
    from dicomcrypt.cli import serve
    from dicomcrypt.config import read_table

    _setup_argparser()  # every command's table is known, as when the service starts
    values = read_table(REPO / "contrib" / "serve.toml", "serve", serve.OPTIONS)
    assert values["out"] == Path("/var/lib/dicomcrypt/incoming")
    assert values["log_file"] == Path("/var/log/dicomcrypt/serve.log") and values["log_format"] == "json"
    assert "key" not in values  # the unit passes it as a credential


def test_a_refused_connection_is_reported_once(capsys):
    """pynetdicom's own error lines about it appear only with -v."""
    assert main(["echo", "RECEIVER@127.0.0.1:1"]) == 3
    assert capsys.readouterr().err.strip().splitlines() == [
        "dicomcrypt: error: association with RECEIVER@127.0.0.1:1: cannot connect to 127.0.0.1:1: Connection refused"
    ]
    assert main(["echo", "-v", "RECEIVER@127.0.0.1:1"]) == 3
    assert "pynetdicom: error: " in capsys.readouterr().err
