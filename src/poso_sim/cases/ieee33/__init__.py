"""The IEEE 33-bus radial feeder (Baran & Wu 1989) with a 24-h dispatch NLP on exact DistFlow.

Public API::

    load_case(path=None) -> FeederCase                 # the packaged case, or a feeder file
    build_model(case=None, variant="true", days=1)     # Pyomo ConcreteModel; variants: VARIANTS
    build_power_flow_model(case=None, load_scale=1.0)  # the base-case power flow as a square NLP
    power_flow(case, load_scale=1.0, injections=None)  # the same equations solved by sweeps (numpy)

Source of the network data: M. E. Baran, F. F. Wu, "Network reconfiguration in distribution systems for loss
reduction and load balancing", IEEE Trans. Power Delivery 4(2), 1989. See docs/cases/ieee33.md.
"""

from poso_sim.common import lazy_exports

from .loader import PACKAGED, case_from_dict, load_case
from .powerflow import PowerFlow, Topology, power_flow, topology
from .schema import HOURS, FeederCase

# The model builders need Pyomo, a heavy import: loaded on first use (loading the case or a power flow does not).
_LAZY = {"build_model": "model", "build_power_flow_model": "model", "VARIANTS": "model", "COST_EXPRESSIONS": "model"}

__getattr__ = lazy_exports(__name__, _LAZY, globals())


__all__ = [
    "COST_EXPRESSIONS",
    "FeederCase",
    "HOURS",
    "PACKAGED",
    "PowerFlow",
    "Topology",
    "VARIANTS",
    "build_model",
    "build_power_flow_model",
    "case_from_dict",
    "load_case",
    "power_flow",
    "topology",
]
