# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 3. A small sweep: does safety survive a bad network?
#
# Scenario II (an equivocating leader and a relay that forwards the bad plan) under message latency and
# loss, over a few seeds: one table row per run, then the outcome rates against the loss probability.
# The same loop scales out on Dask (see the how-to "Run a sweep on Dask"); here it runs in-process.
#
# Real payloads verify each distinct plan once per process (the verdicts are memoised by digest), so a sweep
# costs about the same with real plans as with stubs once the plans are cached.

# %%
import itertools
import os

import matplotlib.pyplot as plt
import pandas as pd

from poso_sim.report.plots import plot_sweep
from poso_sim.scenarios.model import FaultSpec, NetworkSpec, resolve_scenario
from poso_sim.scenarios.runner import run_scenario as _run_scenario


def run_scenario(*args, **kwargs):
    """`run_scenario`, also inside Jupyter: the kernel's own event loop is already running in this thread, so
    the virtual-time loop then runs in a worker thread."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run_scenario(*args, **kwargs)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(_run_scenario, *args, **kwargs).result()


PAYLOADS = "stub" if os.environ.get("POSO_SIM_EXAMPLES_STUB") == "1" else "real"
LATENCY_MEAN = [0.0, 0.05, 0.2]  # seconds (log-normal, sd = half the mean)
LOSS = [0.0, 0.1, 0.3]  # probability that a message is lost
SEEDS = range(3)
base = resolve_scenario("scenario-2")
print(f"{PAYLOADS} payloads; {len(LATENCY_MEAN) * len(LOSS) * len(SEEDS)} runs of {base.name}")


# %%
def one_run(latency: float, loss: float, seed: int) -> dict:
    network = NetworkSpec(
        latency=[latency, latency / 2] if latency > 0 else 0.0,
        faults=[FaultSpec(type="loss", p=loss)] if loss > 0 else [],
    )
    result = run_scenario(base.with_(network=network), payloads=PAYLOADS, seed=seed)
    ex = result.executed
    decided = [d for d in result.decisions_at(1).values() if d is not None]
    honest = [result.decisions_at(1)[h] for h in result.honest]
    return {
        "latency": latency,
        "loss": loss,
        "seed": seed,
        # safety: nothing non-optimal decided by an honest delegate or executed by a normal node
        "safe": all(d is None or d["label"] == "optimal" for d in honest)
        and (ex is None or ex["label"] == "optimal"),
        "executed": ex is not None,
        "honest_decided": sum(d is not None for d in honest) / len(honest),
        "decisions": len(decided),
        "messages": result.messages,
        "dropped": sum(1 for r in result.trace if r["ev"] == "drop"),
        "virtual_seconds": result.virtual_seconds,
    }


rows = [one_run(lat, loss, seed) for lat, loss, seed in itertools.product(LATENCY_MEAN, LOSS, SEEDS)]
sweep = pd.DataFrame(rows)
sweep.head()

# %% [markdown]
# Rates per cell of the grid (mean over seeds):

# %%
sweep.groupby(["latency", "loss"])[["safe", "executed", "honest_decided", "messages"]].mean()

# %% [markdown]
# Outcome rates and costs against the loss probability, one line per latency. Liveness (a plan executed,
# honest delegates deciding) may degrade as messages are lost; safety must not.

# %%
fig = plot_sweep(sweep, x="loss", metrics=["safe", "executed", "honest_decided", "messages", "dropped"],
                 by="latency")
fig

# %%
assert sweep["safe"].all(), sweep[~sweep["safe"]]
assert sweep.loc[sweep["loss"] == 0, "executed"].all()
plt.close("all")
