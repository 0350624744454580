"""``python -m forensics.cli``: the ``forensics`` command."""

from forensics.cli import main

raise SystemExit(main())
