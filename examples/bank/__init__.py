"""A small event-sourced bank: accounts as aggregates, a balances read model, an outbox.

``python -m examples.bank [DB]`` runs it; see ``docs/event-sourcing.md``.
"""
