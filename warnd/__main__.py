"""``python -m warnd`` is the ``warnd`` command."""

from warnd.cli import main

main()
