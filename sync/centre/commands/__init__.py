"""Command groups of the ``centre`` CLI; each module has ``register(subparsers)``."""
