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
# # 2. The four scenarios and Table 3
#
# Five delegates C, D, E, F, G take turns as leader; some of them misbehave (a leader that lies or ignores
# followers, a relay that forwards a bad plan, a leader that sends a feasible but non-optimal plan, a colluding
# follower). Each packaged scenario runs in virtual time on a deterministic simulated network. The honest
# delegates must never decide, and the normal nodes never execute, a non-optimal plan.
#
# With real payloads the plans come from the solution cache and every verification is the real KKT
# certificate (memoised per plan). `POSO_SIM_EXAMPLES_STUB=1` swaps in stub payloads: fixed digests and costs
# and a verdict table, no solver.

# %%
import os

import matplotlib.pyplot as plt
import pandas as pd

from poso_sim.report.html import outcome_html, table3_html
from poso_sim.report.plots import plot_message_sequence
from poso_sim.report.table3 import render_table3
from poso_sim.scenarios.model import packaged_scenarios
from poso_sim.scenarios import run_scenario

# `run_scenario` blocks until the run is over; it also works from a notebook cell (the virtual-time loop never
# shares the kernel's thread). To keep a notebook's or an asyncio program's loop responsive while plans are
# solved and the simulation runs, use `result = await arun_scenario(name)` instead (same arguments, same result).


try:  # inside Jupyter/IPython: rich display; as a plain script: nothing to display
    get_ipython  # noqa: B018  (defined only under IPython)
    from IPython.display import HTML, display
except NameError:
    def HTML(text):
        return text

    def display(*objs):
        return None

PAYLOADS = "stub" if os.environ.get("POSO_SIM_EXAMPLES_STUB") == "1" else "real"
print(f"{PAYLOADS} payloads")
for name, description in packaged_scenarios().items():
    print(f"{name}: {description.strip().splitlines()[0]}")

# %% [markdown]
# ## Run the paper's four
#
# (`chain-7`, the other packaged scenario, decides a new day at each height: docs/howto/chain-of-days.md.)

# %%
PAPER = [name for name in packaged_scenarios() if name.startswith("scenario-")]
runs = {name: run_scenario(name, payloads=PAYLOADS) for name in PAPER}


def outcome_row(result):
    ex = result.executed or {}
    return {
        "scenario": result.scenario.name,
        "dishonest": ", ".join(result.dishonest),
        "executed": f"{ex.get('leader')}'s {ex.get('label')}" if ex else None,
        "true cost ($)": ex.get("true_cost") if ex else None,
        "votes": ex.get("votes") if ex else 0,
        "excluded": ", ".join(result.excluded_by_honest()),
        "messages": result.messages,
        "virtual s": result.virtual_seconds,
    }


outcomes = pd.DataFrame([outcome_row(r) for r in runs.values()]).set_index("scenario")
outcomes

# %% [markdown]
# ## Scenario I in detail
# Who decided what, then the paper's Table 3: per phase ("Leader is X"), one row per receiving delegate, R1 the
# copy received directly from the leader, R2 a copy relayed once. A cell reads `<$COST>PATH`.

# %%
s1 = runs["scenario-1"]
display(HTML(outcome_html(s1)))
display(HTML(table3_html(s1)))
print(render_table3(s1))

# %% [markdown]
# The message sequence chart of the same run: one lane per node, virtual time going down. With zero latency
# everything happens at a few instants, so the chart orders events as they happened and labels the instants.

# %%
fig = plot_message_sequence(s1)
fig

# %% [markdown]
# ## Scenario II: relays of three hops
# C equivocates; D relays the optimum on and E, G relay it again, so Table 3 grows an R3 column.

# %%
s2 = runs["scenario-2"]
display(HTML(table3_html(s2, height=1)))
fig = plot_message_sequence(s2, kinds=["proposal", "relay"], normals=False)
fig

# %% [markdown]
# ## The safety property, checked
# In every scenario the normal nodes execute the optimal plan and no honest delegate decides anything else.

# %%
for name, r in runs.items():
    ex = r.executed
    assert ex is not None and ex["label"] == "optimal", (name, ex)
    for d in r.honest:
        dec = r.decisions_at(1)[d]
        assert dec is None or dec["label"] == "optimal", (name, d, dec)
print("safe in all four scenarios")
plt.close("all")
