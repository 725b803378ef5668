"""The ground floor, importing nothing else of the package: user errors and
the one-line CLI wrapper, dataset checks, atomic file writes, latency
timing, numerical checks, where the configs are, and every torch-version
gate (``compat``)."""
