"""poso_sim.scenarios: YAML scenarios (pydantic-validated), the reference's legacy format, the four packaged
scenarios, payload sources (real solutions + KKT certificate, or stubs) and the virtual-time runner.

    from poso_sim.scenarios import run_scenario
    result = run_scenario("scenario-1")                 # real payloads (cached solves, KKT certificate)
    result = run_scenario("scenario-1", payloads="stub")
    result.to_json()["executed"]

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
from .payloads import (
    STUB_COSTS,
    VERDICTS,
    PayloadSource,
    RealPayloads,
    StubPayloads,
    StubSolution,
    VerifyResult,
    clear_verdicts,
    make_source,
)
from .runner import Runner, RunResult, run_scenario

__all__ = [
    "Scenario", "NetworkSpec", "FaultSpec", "BEHAVIOUR_KEYS", "load_scenario", "parse_scenario", "import_legacy",
    "packaged_scenarios", "resolve_scenario", "generated_name", "legacy_name",
    "PayloadSource", "VerifyResult", "StubPayloads", "StubSolution", "RealPayloads", "VERDICTS", "clear_verdicts",
    "make_source", "STUB_COSTS",
    "Runner", "RunResult", "run_scenario",
]
