"""``python -m warnd`` is the ``warnd`` command."""

from warnd.cli.main import main

main()
