"""``dicomcrypt orthanc-script``: the loader script and configuration snippet it writes.

That the script really loads in Orthanc is proven by tests/integrations/test_orthanc_*.py, whose
Orthanc fixture (helpers.orthanc) runs this very command.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dicomcrypt import Key
from dicomcrypt.cli._common import EXIT_NOT_STARTED, EXIT_OK
from dicomcrypt.cli.main import main
from dicomcrypt.integrations.orthanc_config import current_site_packages, orthanc_dictionary, parse_settings
from dicomcrypt.errors import ConfigError


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "site.key"
    Key.generate().save(path)
    return path


def test_writes_the_script_and_prints_the_configuration(
    tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "dicomcrypt_orthanc.py"
    plugin = tmp_path / "libOrthancPython.so"
    plugin.write_bytes(b"\x7fELF fake plugin naming libpython3.11.so.1.0")
    code = main(["orthanc-script", "--out", str(script), "--key", str(key_file), "--mode", "encrypt",
                 "--encrypt-mode", "standard", "--plugin", str(plugin)])
    captured = capsys.readouterr()
    assert code == EXIT_OK, captured.err
    snippet = json.loads(captured.out)
    assert snippet["PythonScript"] == str(script.resolve())
    assert snippet["Plugins"] == [str(plugin)]
    assert snippet["DicomCrypt"] == {
        "Mode": "encrypt", "KeyFiles": [str(key_file.resolve())], "EncryptMode": "standard"
    }
    assert snippet["Dictionary"] == orthanc_dictionary()
    settings = parse_settings(snippet)
    assert (settings.mode, settings.encrypt_mode) == ("encrypt", "standard")

    text = script.read_text()
    assert f"site.addsitedir({str(current_site_packages())!r})" in text
    assert "orthanc_plugin.install()" in text
    compile(text, str(script), "exec")


def test_refuses_to_overwrite_without_force(tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "script.py"
    script.write_text("# the site's own\n")
    assert main(["orthanc-script", "--out", str(script), "--key", str(key_file)]) == EXIT_NOT_STARTED
    assert "exists" in capsys.readouterr().err
    assert script.read_text() == "# the site's own\n"
    assert main(["orthanc-script", "--out", str(script), "--key", str(key_file), "--force"]) == EXIT_OK


def test_refuses_a_venv_for_another_python_than_the_plugin_embeds(
    tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    venv = tmp_path / "venv"
    (venv / "lib" / "python3.9" / "site-packages").mkdir(parents=True)
    plugin = tmp_path / "libOrthancPython.so"
    plugin.write_bytes(b"... libpython3.11.so.1.0 ...")
    code = main(["orthanc-script", "--out", str(tmp_path / "s.py"), "--key", str(key_file),
                 "--venv", str(venv), "--plugin", str(plugin)])
    assert code == EXIT_NOT_STARTED
    assert "embeds Python 3.11" in capsys.readouterr().err
    assert not (tmp_path / "s.py").exists()


def test_refuses_a_folder_that_is_not_a_venv(
    tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["orthanc-script", "--out", str(tmp_path / "s.py"), "--key", str(key_file), "--venv", str(tmp_path)])
    assert code == EXIT_NOT_STARTED
    assert "not a Python venv" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (None, 'no "DicomCrypt" section'),
        ({"Mode": "decrypt", "KeyFiles": ["k"]}, '"DicomCrypt.Mode" must be'),
        ({"Mode": "restore"}, '"DicomCrypt.KeyFiles" must be'),
        ({"Mode": "encrypt", "KeyFiles": "k", "EncryptMode": "fast"}, '"DicomCrypt.EncryptMode"'),
        ({"Mode": "restore", "KeyFiles": ["k"], "Keyfiles": ["k"]}, "unknown key\\(s\\) Keyfiles"),
        ({"Mode": "restore", "KeyFiles": ["k"], "Model": ""}, '"DicomCrypt.Model"'),
        ({"Mode": "restore", "KeyFiles": ["k"], "OutputSyntax": "jpeg"}, '"DicomCrypt.OutputSyntax"'),
        ({"Mode": "restore", "KeyFiles": ["k"], "UidRoot": "1.02.3"}, '"DicomCrypt.UidRoot"'),
        ({"Mode": "encrypt", "KeyFiles": ["k"], "EncryptEffort": "max"}, '"DicomCrypt.EncryptEffort" must be one of'),
    ],
)
def test_settings_errors_name_the_key(section: dict | None, message: str) -> None:
    configuration = {} if section is None else {"DicomCrypt": section}
    with pytest.raises(ConfigError, match=message):
        parse_settings(configuration)


def test_restore_output_settings_reach_the_hook_settings() -> None:
    settings = parse_settings({"DicomCrypt": {"Mode": "restore", "KeyFiles": "k", "OutputSyntax": "original",
                                              "UidRoot": "1.2.826.0.1.3680043.10.999"}})
    assert (settings.output_syntax, settings.uid_root) == ("original", "1.2.826.0.1.3680043.10.999")
    assert parse_settings({"DicomCrypt": {"Mode": "restore", "KeyFiles": "k"}}).output_syntax is None  # as before


def test_the_encrypt_effort_reaches_the_hook_settings() -> None:
    settings = parse_settings({"DicomCrypt": {"Mode": "encrypt", "KeyFiles": "k", "EncryptEffort": "fast"}})
    assert settings.encrypt_effort == "fast"
    assert parse_settings({"DicomCrypt": {"Mode": "encrypt", "KeyFiles": "k"}}).encrypt_effort is None  # the default
