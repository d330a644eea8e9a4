"""``dps-lens`` with a scan method that injects faults on rank 1, for the torchrun tests.

``exact-faulty`` scores exactly like ``exact`` and appends the cells of every unit it finishes to
``$FAULT_LOG.rank<r>``. Under torchrun, rank 1 then fails on the unit after the first
``$FAULT_AFTER`` it finished: ``FAULT=kill`` kills the process with SIGKILL (once: the marker file
``$FAULT_LOG.killed`` keeps a rerun alive), ``FAULT=raise`` raises an error.

    torchrun --standalone --nproc_per_node 2 tests/distributed_worker.py discover ...
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

from dps_lens import distributed
from dps_lens.cli import main
from dps_lens.scoring.planners import exact_work
from dps_lens.scoring.scan import ScanState, Work, register_scan_method


@register_scan_method("exact-faulty")
def faulty_work(state: ScanState) -> Iterator[Work]:
    ranks = distributed.current()
    log = Path(os.environ["FAULT_LOG"])
    fault, after = os.environ.get("FAULT", ""), int(os.environ.get("FAULT_AFTER", "0"))
    finished = 0

    for item in exact_work(state):

        def compute(item: Work = item):
            nonlocal finished
            if ranks.rank == 1 and finished == after:
                marker = log.with_name(log.name + ".killed")
                if fault == "kill" and not marker.exists():
                    marker.touch()
                    os.kill(os.getpid(), signal.SIGKILL)
                if fault == "raise":
                    raise RuntimeError("injected fault")
            values = item.compute()
            with log.with_name(f"{log.name}.rank{ranks.rank}").open("a") as handle:
                handle.write(json.dumps([[i, list(h)] for i, h in item.cells]) + "\n")
            finished += 1
            return values

        yield Work(item.cells, compute)


if __name__ == "__main__":
    raise SystemExit(main())
