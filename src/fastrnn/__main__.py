"""``python -m fastrnn``: the command line of :mod:`fastrnn.cli.main`."""

from fastrnn.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
