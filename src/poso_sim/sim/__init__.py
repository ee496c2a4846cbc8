"""poso_sim.sim: a generic asyncio runtime in virtual time (clock, nodes, channels, latency, faults, trace).

It knows nothing of PoSo; see docs/kernel.md.
"""

from poso_sim.sim.clock import (
    DeadlockError,
    SimulationError,
    VirtualTimeEventLoop,
    WallClockError,
    forbid_wall_clock,
    new_virtual_loop,
    run,
)
from poso_sim.sim.faults import Crash, DelaySpike, Duplicate, Fault, Filter, Loss, Partition, Reorder
from poso_sim.sim.latency import Constant, LatencyModel, LogNormal, RegionTable, Uniform
from poso_sim.sim.network import Inbox, Message, Network, Node
from poso_sim.sim.rng import Stream, derive_seed
from poso_sim.sim.trace import EVENTS, FIELDS, Trace

__all__ = [
    "EVENTS",
    "FIELDS",
    "Constant",
    "Crash",
    "DeadlockError",
    "DelaySpike",
    "Duplicate",
    "Fault",
    "Filter",
    "Inbox",
    "LatencyModel",
    "LogNormal",
    "Loss",
    "Message",
    "Network",
    "Node",
    "Partition",
    "RegionTable",
    "Reorder",
    "SimulationError",
    "Stream",
    "Trace",
    "Uniform",
    "VirtualTimeEventLoop",
    "WallClockError",
    "derive_seed",
    "forbid_wall_clock",
    "new_virtual_loop",
    "run",
]
