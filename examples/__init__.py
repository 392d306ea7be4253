"""Runnable examples of seawall; ``python -m examples.shop`` is ``make demo``."""
