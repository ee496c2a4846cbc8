"""poso_sim.scenarios: YAML scenarios (pydantic-validated), the reference's legacy format, the four packaged
scenarios, payload sources (real solutions + KKT certificate, or stubs) and the virtual-time runner.

    from poso_sim.scenarios import run_scenario
    result = run_scenario("scenario-1")                 # real payloads (cached solves, KKT certificate)
    result = run_scenario("scenario-1", payloads="stub")
    result.to_json()["executed"]
    result = await arun_scenario("scenario-1")          # from asyncio code or a notebook
    result.log                                          # the typed run log every report reads

See docs/scenarios.md.
"""

from .model import (
    BEHAVIOUR_KEYS,
    FaultSpec,
    NetworkSpec,
    Scenario,
    generated_name,
    import_legacy,
    legacy_name,
    load_scenario,
    packaged_scenarios,
    parse_scenario,
    resolve_scenario,
)
from .log import Entry, RunLog
from .payloads import (
    STUB_COSTS,
    PayloadSource,
    RealPayloads,
    StubPayloads,
    StubSolution,
    make_source,
    solution_matches,
)
from .instances import Instance, InstanceError, InstancePayloads, SolveTimes, resolve_instances
from .runner import Runner, RunResult, VerificationService, arun_scenario, needed_labels, run_scenario
from .session import Session, clear_verdicts, default_session

__all__ = [
    "Scenario", "NetworkSpec", "FaultSpec", "BEHAVIOUR_KEYS", "load_scenario", "parse_scenario", "import_legacy",
    "packaged_scenarios", "resolve_scenario", "generated_name", "legacy_name",
    "PayloadSource", "StubPayloads", "StubSolution", "RealPayloads", "make_source", "solution_matches", "STUB_COSTS",
    "Session", "default_session", "clear_verdicts",
    "Runner", "RunResult", "run_scenario", "arun_scenario", "needed_labels", "VerificationService",
    "RunLog", "Entry",
    "Instance", "InstanceError", "InstancePayloads", "SolveTimes", "resolve_instances",
]
