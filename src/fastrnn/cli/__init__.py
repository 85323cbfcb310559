"""The command line (``fastrnn <command>``, ``python -m fastrnn <command>``) and its engines.

- :mod:`fastrnn.cli.main`: the parser and the dispatch to the registered commands;
- :mod:`fastrnn.cli.command`: what a command is made of (its error, argument types);
- :mod:`fastrnn.cli.info`: ``info``, the build description and a self-check;
- :mod:`fastrnn.cli.commands`: the options and runners of ``demo``, ``generate``, ``train``,
  ``predict`` and ``bench``;
- :mod:`fastrnn.cli.demo`: the character-level language model behind ``demo`` and
  ``generate``;
- :mod:`fastrnn.cli.train`: the time-series forecaster behind ``train``;
- :mod:`fastrnn.cli.forecast`: what a forecaster sees of a series (transforms, scaling,
  windows) and its comparison with the naive forecast, shared by ``train`` and ``predict``;
- :mod:`fastrnn.cli.predict`: ``predict``, a saved forecaster applied to a series.

The benchmark behind ``bench`` is the package :mod:`fastrnn.bench`.
"""
