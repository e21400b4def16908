"""Orthanc set-up that needs no Orthanc: the "DicomCrypt" settings, the "Dictionary" entries for
our private tags, and the loader script Orthanc's Python plugin runs.

Kept apart from :mod:`orthanc_plugin` (which needs the ``orthanc`` module only Orthanc provides)
so ``dicomcrypt orthanc-script`` and the tests can use it anywhere.

Orthanc's Python plugin embeds the system Python (Debian: libpython3.11) and does not read our
venv. The loader script adds the venv's site-packages with ``site.addsitedir``, which also runs
its ``.pth`` files: that is how an editable install (a ``.pth`` file and an import hook) is
found, and why ``PYTHONPATH`` to site-packages is not enough.
"""

from __future__ import annotations

import json
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dicomcrypt.errors import ConfigError
from dicomcrypt.settings import EFFORTS

if TYPE_CHECKING:
    from dicomcrypt.integrations.hooks import HookMode

SECTION = "DicomCrypt"
STATUS_ROUTE = "/dicomcrypt/status"
_KEYS = {"Mode", "KeyFiles", "EncryptMode", "Model", "EncryptKeyId"}
_KEYS |= {"OutputSyntax", "UidRoot"}  # restore: how restored instances are written (docs/dicom/output-syntax.md)
_KEYS |= {"EncryptEffort"}  # encrypt: the lossless mode's exact-coding effort (docs/codec.md)


@dataclass(frozen=True)
class OrthancSettings:
    """The "DicomCrypt" section of Orthanc's configuration, checked."""

    mode: HookMode
    key_files: tuple[str, ...]
    encrypt_mode: str = "lossless"
    model: str | None = None
    encrypt_key_id: str | None = None
    output_syntax: str | None = None
    uid_root: str | None = None
    encrypt_effort: str | None = None


def parse_settings(configuration: Mapping[str, Any]) -> OrthancSettings:
    """Read the "DicomCrypt" section of Orthanc's whole configuration (a parsed JSON object).

    Raises :class:`ConfigError` naming the key at fault: a wrong setting must stop the plugin,
    never leave Orthanc storing plaintext when the site asked for encryption.
    """
    section = configuration.get(SECTION)
    if not isinstance(section, Mapping):
        raise ConfigError(f'Orthanc configuration: no "{SECTION}" section (an object with Mode and KeyFiles)')
    unknown = sorted(set(section) - _KEYS)
    if unknown:
        raise ConfigError(f'"{SECTION}": unknown key(s) {", ".join(unknown)}; known: {", ".join(sorted(_KEYS))}')
    mode = section.get("Mode")
    if mode not in ("restore", "encrypt"):
        raise ConfigError(f'"{SECTION}.Mode" must be "restore" or "encrypt", not {mode!r}')
    key_files = section.get("KeyFiles")
    if isinstance(key_files, str):
        key_files = [key_files]
    if not isinstance(key_files, list) or not key_files or not all(isinstance(k, str) and k for k in key_files):
        raise ConfigError(f'"{SECTION}.KeyFiles" must be a key file or folder path, or a list of them')
    encrypt_mode = section.get("EncryptMode", "lossless")
    if encrypt_mode not in ("lossless", "lossy", "standard"):
        raise ConfigError(f'"{SECTION}.EncryptMode" must be "lossless", "lossy" or "standard", not {encrypt_mode!r}')
    for name in ("Model", "EncryptKeyId"):
        value = section.get(name)
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f'"{SECTION}.{name}" must be a non-empty string')
    output_syntax, uid_root = _restore_output(section)
    effort = section.get("EncryptEffort")
    if effort is not None and effort not in EFFORTS:
        raise ConfigError(f'"{SECTION}.EncryptEffort" must be one of {", ".join(EFFORTS)}, not {effort!r}')
    return OrthancSettings(
        mode, tuple(key_files), encrypt_mode, section.get("Model"), section.get("EncryptKeyId"), output_syntax,
        uid_root, effort,
    )


def _restore_output(section: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """``OutputSyntax`` and ``UidRoot``, checked; absent: restored instances stay uncompressed."""
    from dicomcrypt.dicom.output_syntax import OUTPUT_SYNTAX_CHOICES  # pydicom: only when parsing

    output_syntax, uid_root = section.get("OutputSyntax"), section.get("UidRoot")
    if output_syntax is not None and output_syntax not in OUTPUT_SYNTAX_CHOICES:
        raise ConfigError(
            f'"{SECTION}.OutputSyntax" must be one of {", ".join(OUTPUT_SYNTAX_CHOICES)}, not {output_syntax!r}'
        )
    if uid_root is not None:
        from dicomcrypt.dicom.derived import check_uid_root
        from dicomcrypt.errors import InvalidInputError

        try:
            check_uid_root(uid_root if isinstance(uid_root, str) else repr(uid_root))
        except InvalidInputError as exc:
            raise ConfigError(f'"{SECTION}.UidRoot": {exc}') from None
    return output_syntax, uid_root


def orthanc_dictionary() -> dict[str, list[Any]]:
    """Orthanc "Dictionary" entries naming our private tags (at the block's usual slot 0x10).

    No entry for the Private Creator element (0011,0010) itself: DCMTK keys private entries by
    creator and the element's low byte, so "0011,0010" with our creator would be the same entry
    as "0011,1010" and Orthanc refuses to start ("Cannot register twice the tag").
    """
    from dicomcrypt.dicom.private_block import PRIVATE_CREATOR, PRIVATE_ENTRIES, PRIVATE_GROUP

    entries: dict[str, list[Any]] = {}
    for offset, vr, vm, name in PRIVATE_ENTRIES:
        low, _, high = vm.partition("-")
        entries[f"{PRIVATE_GROUP:04x},10{offset:02x}"] = [
            vr, name, int(low), 0 if high == "n" else int(high or low), PRIVATE_CREATOR
        ]
    return entries


def site_packages(venv: str | Path) -> Path:
    """The site-packages folder of a venv (it must exist)."""
    venv = Path(venv).expanduser().resolve()
    candidates = sorted(venv.glob("lib/python3*/site-packages")) + sorted(venv.glob("Lib/site-packages"))
    if not candidates:
        raise ConfigError(f"{venv}: not a Python venv (no lib/python3*/site-packages)")
    return candidates[0]


def current_site_packages() -> Path:
    """site-packages of the Python running now (the venv dicomcrypt is installed in)."""
    return Path(sysconfig.get_paths()["purelib"])


def loader_script(site_dir: Path, extra_paths: Sequence[Path] = ()) -> str:
    """The Python script Orthanc's plugin runs ("PythonScript"): find our venv, install the hook."""
    lines = [
        '"""Orthanc PythonScript written by `dicomcrypt orthanc-script`: loads the dicomcrypt storage hook.',
        "",
        'Settings: the "DicomCrypt" section of Orthanc\'s configuration (docs/integrations.md).',
        '"""',
        "import site",
        "import sys",
        "",
        f"# The venv dicomcrypt is installed in (Python {sys.version_info.major}.{sys.version_info.minor});"
        " addsitedir also runs its .pth files.",
        "# Its entries go first: Debian's dist-packages may hold older copies of our dependencies",
        "# (python3-cryptography 38 has no HPKE), and addsitedir alone would append after them.",
        "_system_path = list(sys.path)",
        f"site.addsitedir({str(site_dir)!r})",
        "sys.path[:] = [p for p in sys.path if p not in _system_path] + _system_path",
    ]
    for path in reversed(list(extra_paths)):
        lines.append(f"sys.path.insert(0, {str(path)!r})  # a source checkout, ahead of the venv")
    lines += [
        "",
        "from dicomcrypt.integrations import orthanc_plugin",
        "",
        "orthanc_plugin.install()",
        "",
    ]
    return "\n".join(lines)


def config_snippet(script: Path, plugin: Path | None, key_files: Sequence[str], mode: str,
                   *, encrypt_mode: str = "lossless", model: str | None = None) -> dict[str, Any]:
    """The Orthanc configuration entries to merge into a site's configuration file."""
    section: dict[str, Any] = {"Mode": mode, "KeyFiles": list(key_files)}
    if mode == "encrypt":
        section["EncryptMode"] = encrypt_mode
    if model:
        section["Model"] = model
    snippet: dict[str, Any] = {}
    if plugin is not None:
        snippet["Plugins"] = [str(plugin)]
    snippet["PythonScript"] = str(script)
    snippet[SECTION] = section
    snippet["Dictionary"] = orthanc_dictionary()
    return snippet


def find_python_plugin() -> Path | None:
    """Orthanc's Python plugin as Debian installs it, if present."""
    for candidate in (
        Path("/usr/share/orthanc/plugins/libOrthancPython.so"),
        *sorted(Path("/usr/lib/orthanc").glob("libOrthancPython.so*")),
    ):
        if candidate.is_file():
            return candidate
    return None


def plugin_python_version(plugin: Path) -> str | None:
    """The Python version ("3.11") Orthanc's Python plugin embeds, read from the libpython it names."""
    import re

    try:
        data = plugin.read_bytes()
    except OSError:
        return None
    found = re.search(rb"libpython(3\.[0-9]+)", data)
    return found.group(1).decode() if found else None


def dumps(snippet: Mapping[str, Any]) -> str:
    return json.dumps(snippet, indent=2) + "\n"
