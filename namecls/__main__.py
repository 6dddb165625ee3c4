"""``python -m namecls``: the ``namecls`` command line (:mod:`namecls.cli`)."""

from .cli import main

raise SystemExit(main())
