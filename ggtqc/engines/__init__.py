"""Engines that score a run's pairs. The local engine is :mod:`ggtqc.runner`; Ray Data is
:mod:`ggtqc.engines.ray`. Both score through ``ggtqc.runner.score_pairs`` and decide through
``ggtqc.decide``, so the same input gives the same rows whichever engine ran it."""

ENGINES = ("local", "ray")


class EngineError(Exception):
    """An engine cannot start (not installed, no cluster at the address); the message says what to do."""
