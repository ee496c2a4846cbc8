"""poso_sim.sweep: declarative sweeps over scenario parameters, run on any executor, checked by a campaign
checker (safety and liveness from each run's trace). See docs/sweeps.md."""

from .campaign import SweepResult, coverage_table, replay_command, run_sweep, save_table, summary_table
from .checker import PROPERTIES, SAFETY, CheckResult, build_trace, check_trace, network_premise
from .spec import (
    BEHAVIOUR_KINDS,
    CaseSpec,
    Parameters,
    SweepError,
    SweepSpec,
    load_sweep,
    packaged_sweeps,
    parse_sweep,
    resolve_sweep,
    scenario_yaml,
)
from .worker import MUTATIONS, PayloadDescriptor, run_case, session_for

__all__ = [
    "SweepSpec", "Parameters", "CaseSpec", "SweepError", "BEHAVIOUR_KINDS",
    "load_sweep", "parse_sweep", "resolve_sweep", "packaged_sweeps", "scenario_yaml",
    "run_sweep", "SweepResult", "replay_command", "summary_table", "coverage_table", "save_table",
    "check_trace", "build_trace", "CheckResult", "network_premise", "SAFETY", "PROPERTIES",
    "run_case", "PayloadDescriptor", "MUTATIONS", "session_for",
]
