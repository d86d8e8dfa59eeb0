"""``python -m calibprune.cli``: the ``calibprune`` command."""

from . import main

main()
