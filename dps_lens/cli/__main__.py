"""``python -m dps_lens.cli``: the ``dps-lens`` command line."""

from dps_lens.cli import main

raise SystemExit(main())
