"""Shared pytest configuration."""

pytest_plugins = ["poso_sim.sim.pytest_plugin"]


# --- Manchester solutions for the KKT certificate tests (poso_sim.kkt) ------------------------------------------------
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def manchester_solutions():
    """``{"problem": true CompiledNLP, "optimal"|"tampered"|"feasible": Solution on the shared true problem,
    "raw": {variant: Solution as solved}}`` from the cached solve API (see ``tests/_probes.py``)."""
    from _probes import manchester_plans

    return manchester_plans("manchester")
