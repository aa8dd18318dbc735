"""The ``imagegen`` command line (``worker.cli.main``): the top of the house, the only
place that imports ``api`` and ``simulator``."""
