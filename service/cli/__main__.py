"""``python -m service.cli``: the same as the ``vigil`` entry point."""

from . import main

main()
