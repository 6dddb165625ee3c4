"""``python -m namecls``: the ``namecls`` command line (:mod:`namecls.serving.cli`)."""

from .serving.cli import main

raise SystemExit(main())
