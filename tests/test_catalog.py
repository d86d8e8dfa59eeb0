"""pruning/catalog.py: the torch-free names of methods, refinements and allocations agree
with the implementations that register into them."""

import subprocess
import sys

import pytest

from calibprune.config import PruneConfig, SparsityTarget
from calibprune.errors import CalibpruneError
from calibprune.pruning import allocation, catalog, methods


@pytest.mark.parametrize("registry", [catalog.METHODS, catalog.REFINERS, catalog.ALLOCATIONS], ids=lambda r: r.kind)
def test_every_declared_name_is_implemented_and_reads_activations_as_declared(registry):
    assert methods.METHODS is catalog.METHODS and methods.REFINERS is catalog.REFINERS
    assert allocation.ALLOCATIONS is catalog.ALLOCATIONS
    implemented = list(registry._factories)
    assert implemented == list(registry.entries), "declared and registered names (and their order) differ"
    for name, entry in registry.entries.items():
        assert catalog.reads_activations(registry.create(name)) is entry.calibrated, name


def test_needs_calibration_agrees_with_the_implementations_for_every_combination():
    target = SparsityTarget.unstructured(0.5)
    for method in catalog.METHODS.names():
        for refine in ("none", *catalog.REFINERS.names()):
            for alloc in catalog.ALLOCATIONS.names():
                if refine == "dsnot" and method in ("sparsegpt", "admm"):
                    continue  # refused by the config
                config = PruneConfig(method, target, allocation=alloc, refine=refine)
                refiner = None if refine == "none" else catalog.REFINERS.create(refine)
                asked = (
                    bool(catalog.METHODS.create(method).needs)
                    or bool(refiner and refiner.needs)
                    or catalog.ALLOCATIONS.create(alloc).needs_calibration
                )
                assert catalog.needs_calibration(config) is asked, (method, refine, alloc)


def test_an_undeclared_name_cannot_register_and_unknown_names_list_the_known_ones():
    with pytest.raises(CalibpruneError, match="not declared in calibprune/pruning/catalog.py"):
        catalog.METHODS.register("brand-new")
    with pytest.raises(CalibpruneError, match="unknown allocation 'owl2': known ones are uniform, owl"):
        catalog.ALLOCATIONS.calibrated("owl2")


def test_a_toy_entry_registered_at_run_time_is_asked_directly(monkeypatch):
    class Toy(methods.Wanda):
        needs = frozenset()

    monkeypatch.setitem(catalog.METHODS._factories, "toy", Toy)
    assert "toy" in catalog.METHODS and catalog.METHODS.names()[-1] == "toy"
    assert not catalog.needs_calibration(PruneConfig("toy", SparsityTarget.unstructured(0.5)))


def test_a_config_is_checked_without_torch():
    code = (
        "import sys\n"
        "from calibprune.config import PruneConfig, SparsityTarget\n"
        "from calibprune.pruning.catalog import needs_calibration\n"
        "config = PruneConfig('magnitude', SparsityTarget.unstructured(0.5), allocation='owl')\n"
        "assert needs_calibration(config)\n"
        "try:\n"
        "    PruneConfig(method='obs', target=SparsityTarget.unstructured(0.5))\n"
        "except Exception as error:\n"
        "    print(error)\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == [
        "method 'obs' is unknown: use one of magnitude, wanda, ria, sparsegpt, admm",
        "False",
    ]
