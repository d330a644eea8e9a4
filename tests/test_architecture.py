"""The import graph: no cycles, and the generic core never imports the organism or the CLI."""

from __future__ import annotations

import grimp
import pytest

CORE = ("dps_lens.models", "dps_lens.interventions", "dps_lens.scoring", "dps_lens.steering")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("dps_lens", include_external_packages=False)


def test_no_import_cycles(graph):
    cycles = [
        (module, imported)
        for module in sorted(graph.modules)
        for imported in sorted(graph.find_modules_directly_imported_by(module))
        if graph.chain_exists(importer=imported, imported=module)
    ]
    assert cycles == []


@pytest.mark.parametrize("core", CORE)
@pytest.mark.parametrize(
    "upper", ["dps_lens.organism", "dps_lens.cli", "dps_lens.studies", "dps_lens.clusters"]
)
def test_core_does_not_import_upper_layers(graph, core, upper):
    assert graph.find_shortest_chain(importer=core, imported=upper, as_packages=True) is None
