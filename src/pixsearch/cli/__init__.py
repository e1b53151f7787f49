"""The ``pixsearch`` command.

One module per command group; ``common`` holds what they share (options, consoles,
``UserError``, the error decorator) and ``app`` assembles them. Importing this package
loads no command: ``main`` imports the app when it runs.
"""

from __future__ import annotations


def main() -> None:
    """Console entry point (``pixsearch = "pixsearch.cli:main"``)."""
    from .app import main as run

    run()


__all__ = ["main"]
