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
# # 4. Twelve hubs clear a market by price iteration
#
# The paper's second system: twelve multi-energy hubs buy and sell gas, electricity and heat at prices that three
# delegates (hubs 10, 11 and 12) iterate round by round. Each round every hub signs its demand and sends it to
# every delegate; the delegates forward the demands to each other, update the prices by the band rule (the grid
# and each heat zone's source), and send them back; each hub takes the price triple a majority of the delegates
# sent and answers with its best response. docs/trading.md has the rules.
#
# With the real best responses every hub solves its own problem each round (compiled once, about 5 ms for the
# twelve). `POSO_SIM_EXAMPLES_STUB=1` swaps in the stub responses (linear in the prices, no solver): the same
# protocol, other numbers.

# %%
import os

import matplotlib.pyplot as plt
import pandas as pd

from poso_sim.report.trading import plot_hub_demands, plot_price_path, render_records
from poso_sim.scenarios.model import resolve_scenario
from poso_sim.scenarios.trading_check import check_market
from poso_sim.scenarios.trading_runner import run_trading

RESPONSES = "stub" if os.environ.get("POSO_SIM_EXAMPLES_STUB") == "1" else "real"
print(f"{RESPONSES} best responses")
market = resolve_scenario("trading-12")
for name, v in market.variants.items():
    print(f"trading-12:{name}: {v.description}")

# %% [markdown]
# ## The honest market
# The price path (after round k) and the end: the Euclidean norm of the price change below 1e-3.

# %%
honest = run_trading("trading-12", responder=RESPONSES)
print(f"{'converged' if honest.converged else 'ended'} after {honest.rounds} rounds, "
      f"{honest.messages} messages, {honest.virtual_seconds:.0f} virtual seconds")
path = pd.DataFrame(honest.path, columns=["gas", "electricity", "heat 1", "heat 2", "heat 3"])
path.iloc[[0, 1, 2, 5, 10, 50, len(path) - 1]] if len(path) > 50 else path.tail()

# %%
fig = plot_price_path(honest)
fig

# %% [markdown]
# Each hub's demand by round (electricity negative: the hub sells), and what each pays at the final prices.

# %%
fig = plot_hub_demands(honest)
fig

# %%
pd.DataFrame(honest.settlement()).T[["demand", "payment"]]

# %% [markdown]
# ## Dishonest variants
# A lying delegate is outvoted (two honest delegates against one), a delegate that forwards nothing changes
# nothing (every delegate has each demand from the hub itself), an equivocating hub is excluded with its two
# signed demands as proof, a silent hub is excluded after three silent rounds.

# %%
rows = []
for variant in ("price-liar", "broadcast-ignore", "equivocating-hub", "silent-hub"):
    res = run_trading(f"trading-12:{variant}", responder=RESPONSES)
    verdict = check_market(res, honest)
    rows.append({"variant": variant, "rounds": res.rounds, "converged": res.converged,
                 "excluded": ", ".join(res.excluded_by_honest()), "same path as honest": res.path == honest.path,
                 "safe": verdict["safe"]})
variants = pd.DataFrame(rows).set_index("variant")
variants

# %% [markdown]
# The records of round 1 of the equivocating hub's run, like the paper's Table 3: one row per receiving
# delegate, one column per sending hub; `H2>H10` is H2's demand forwarded by H10. Delegate H10 got H2's inflated
# copy directly; the others hold H2's honest one, so every delegate sees two different signed demands of H2.

# %%
eq = run_trading("trading-12:equivocating-hub", responder=RESPONSES)
print(render_records(eq, 1))

# %%
assert honest.converged and variants["safe"].all()
assert variants.loc["price-liar", "same path as honest"] and variants.loc["broadcast-ignore", "same path as honest"]
assert variants.loc["equivocating-hub", "excluded"] == "H2" and variants.loc["silent-hub", "excluded"] == "H2"
print("every honest hub followed the honest price path")
plt.close("all")
