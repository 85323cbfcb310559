"""The command line (``fastrnn <command>``, ``python -m fastrnn <command>``) and its engines.

- :mod:`fastrnn.cli.main`: the parser, the commands and the dispatch;
- :mod:`fastrnn.cli.demo`: the character-level language model behind ``demo`` and
  ``generate``;
- :mod:`fastrnn.cli.train`: the time-series forecaster behind ``train``.
"""
