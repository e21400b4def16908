"""``dicomcrypt orthanc-script``: write the script Orthanc's Python plugin loads, and print (or
write, ``--config-out``) the configuration entries that go with it (docs/integrations.md).

The keys are loaded and the storage hook built now, with the checks Orthanc's start would run
(a missing, unreadable or malformed key file, a recipient key where encrypt needs a site key):
a mistake stops here with exit 3, not later as an Orthanc that will not start."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dicomcrypt.cli._common import EXIT_CODES_EPILOG, EXIT_OK, error


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "orthanc-script",
        help="write the Orthanc Python plugin script and its configuration snippet",
        description=(
            "Write OUT, the script Orthanc's Python plugin runs (\"PythonScript\"), and print on stdout\n"
            "the JSON entries to merge into Orthanc's configuration: Plugins, PythonScript, the\n"
            "\"DicomCrypt\" section and the \"Dictionary\" naming our private tags.\n\n"
            "The script adds the venv's site-packages with site.addsitedir (which also runs its .pth\n"
            "files, as editable installs need), then installs the storage hook: 'restore' decrypts\n"
            "encrypted instances as they arrive; 'encrypt' stores plain instances encrypted."
        ),
        epilog=EXIT_CODES_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", "-o", required=True, type=Path, metavar="FILE",
                        help="script to write, e.g. /etc/orthanc/dicomcrypt_orthanc.py")
    parser.add_argument("--key", "-k", required=True, action="append", metavar="PATH",
                        help="key file or folder of *.key files Orthanc reads (repeat for several)")
    parser.add_argument("--mode", choices=("restore", "encrypt"), default="restore",
                        help="restore (decrypt on ingest, default) or encrypt (store encrypted)")
    parser.add_argument("--encrypt-mode", choices=("lossless", "lossy", "standard"), default="lossless",
                        help="with --mode encrypt: how pixels are encoded (default lossless)")
    parser.add_argument("--model", metavar="ID|FOLDER", help="model id or site model folder")
    parser.add_argument("--venv", type=Path, metavar="DIR",
                        help="venv dicomcrypt is installed in (default: the one running this command)")
    parser.add_argument("--source", type=Path, action="append", default=[], metavar="DIR",
                        help="a source checkout to import ahead of the venv (development)")
    parser.add_argument("--plugin", type=Path, metavar="SO",
                        help="Orthanc's Python plugin (default: the Debian package's, if installed)")
    parser.add_argument("--config-out", type=Path, metavar="FILE",
                        help="also write the JSON entries to FILE, ready for Orthanc's configuration folder "
                             "(e.g. /etc/orthanc/dicomcrypt.json)")
    parser.add_argument("--force", action="store_true", help="overwrite OUT (and --config-out) if they exist")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dicomcrypt.errors import DicomCryptError
    from dicomcrypt.files import write_bytes_atomic
    from dicomcrypt.integrations import orthanc_config as oc

    try:
        site_dir = oc.site_packages(args.venv) if args.venv else oc.current_site_packages()
    except DicomCryptError as exc:
        return error(str(exc))
    plugin = args.plugin or oc.find_python_plugin()
    if args.plugin and not args.plugin.is_file():
        return error(f"{args.plugin}: no such plugin file")
    wanted = site_dir.parent.name.removeprefix("python")  # lib/python3.11/site-packages
    if plugin is not None:
        embedded = oc.plugin_python_version(plugin)
        if embedded and wanted.startswith("3.") and embedded != wanted:
            return error(
                f"Orthanc's Python plugin {plugin} embeds Python {embedded}, but the venv {site_dir} is for "
                f"Python {wanted}: its compiled packages (numpy, torch) will not load; make the venv with "
                f"python{embedded}"
            )
    keys = [str(Path(k).expanduser().resolve()) for k in args.key]
    try:
        _check_keys(args, keys)
    except DicomCryptError as exc:
        return error(f"{exc} (Orthanc would not start with these keys)")
    script = oc.loader_script(site_dir, [p.expanduser().resolve() for p in args.source])
    snippet = oc.config_snippet(
        args.out.resolve(), plugin, keys, args.mode, encrypt_mode=args.encrypt_mode, model=args.model
    )
    try:
        write_bytes_atomic(script.encode(), args.out, force=args.force)
        if args.config_out is not None:
            write_bytes_atomic(oc.dumps(snippet).encode(), args.config_out, force=args.force)
    except DicomCryptError as exc:
        return error(str(exc))
    sys.stdout.write(oc.dumps(snippet))
    if args.config_out is not None:
        print(f"wrote {args.out} and {args.config_out}; put {args.config_out} in Orthanc's configuration folder "
              "(or merge it into its configuration file)", file=sys.stderr)
    else:
        print(f"wrote {args.out}; merge the JSON above into Orthanc's configuration", file=sys.stderr)
    return EXIT_OK


def _check_keys(args: argparse.Namespace, keys: list[str]) -> None:
    """Build the storage hook Orthanc will build, from the same key paths (no model warm-up).
    Raises KeyFileError, ConfigError, KeyNotFoundError as it would at Orthanc's start."""
    from dicomcrypt.integrations.hooks import StorageHook

    StorageHook(args.mode, keys=keys, encrypt_mode=args.encrypt_mode, model=args.model, preload=False)
