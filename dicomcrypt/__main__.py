"""``python -m dicomcrypt``: the same command line as the ``dicomcrypt`` script."""

from dicomcrypt.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
