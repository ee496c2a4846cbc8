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
# # 1. Solve the Manchester case and verify a plan
#
# The leader of a PoSo round solves the 24-hour dispatch of the Manchester integrated energy system and sends
# the primal-dual point; every follower checks it with the KKT certificate on its own copy of the problem.
# This notebook does both sides: it solves the true problem and the dishonest leader's *tampered* objective,
# draws the two dispatches side by side, and certifies each plan.
#
# Solves go through the solution cache: the first run of a fresh machine solves (about half a minute per
# objective), later runs load the plans in a fraction of a second. Set `POSO_SIM_EXAMPLES_STUB=1` to skip
# Ipopt altogether: the plans are then the data-only start point, which the certificate rightly rejects.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from poso_sim.cases import load_case, model_sizes
from poso_sim.kkt import verify
from poso_sim.report.html import certificate_html, solution_html
from poso_sim.report.plots import dispatch_frame, plot_dispatch_comparison
from poso_sim.solvers.api import get_problem, solve_case
from poso_sim.solvers.ies import canonical_start
from poso_sim.nlp.solution import Solution

try:  # inside Jupyter/IPython: rich display; as a plain script: nothing to display
    get_ipython  # noqa: B018  (defined only under IPython)
    from IPython.display import HTML, display
except NameError:
    def HTML(text):
        return text

    def display(*objs):
        return None

STUB = os.environ.get("POSO_SIM_EXAMPLES_STUB") == "1"
print("stub mode (no solver)" if STUB else "real solves (cached)")

# %% [markdown]
# ## The model
# `build_model` turns the case data into a Pyomo model; `get_problem` also compiles it into exact sparse
# derivatives (the same compiled problem every delegate uses to verify).

# %%
case = load_case("manchester")
model, nlp = get_problem("manchester", "true")
sizes = model_sizes(model, nonlinear=False)
print(f"{case.name}: {sizes['variables']} variables, {sizes['equalities']} equalities, "
      f"{sizes['inequalities']} inequalities, {sizes['jacobian_nnz']} Jacobian non-zeros")

# %% [markdown]
# ## Two plans: the optimum and the tampered objective
# The tampered objective rewards running CHP 3 and charging its battery less, so its plan satisfies every
# constraint of the true problem but costs about 904 $ instead of 744 $.


# %%
def start_point_plan(variant: str) -> Solution:
    """A stand-in plan without the solver: the data-only start point with zero multipliers."""
    x = canonical_start(nlp, case)
    return Solution(x=x, y=np.zeros(nlp.m), z_L=np.zeros(nlp.n), z_U=np.zeros(nlp.n), x_names=nlp.x_names,
                    row_names=nlp.row_names, variant=variant, case="manchester", cost=float(nlp.true_cost(x)),
                    fingerprint=nlp.fingerprint, status="start point")


if STUB:
    optimal, tampered = start_point_plan("true"), start_point_plan("tampered")
else:
    optimal = solve_case("manchester", "true")
    tampered = solve_case("manchester", "tampered")
display(HTML(solution_html(optimal)))
print(repr(optimal))
print(repr(tampered))

# %% [markdown]
# The schedule as a table (hours x series, read from the canonical vector by variable name):

# %%
schedule = dispatch_frame(optimal)
schedule[["P_grid", "P_CHP[1]", "P_CHP[3]", "H_boiler[1]", "E_bat[3]", "E_tank[3]"]].head(6)

# %%
fig = plot_dispatch_comparison(optimal, tampered)
fig

# %% [markdown]
# ## The certificate
# A follower checks the received point against its own compiled problem: primal feasibility, stationarity of
# the Lagrangian, multiplier signs and complementarity, each scaled. On a nonconvex problem an accepted
# certificate means "a KKT point", not "the global optimum" (see the concepts page on the certificate).

# %%
cert_opt = verify(nlp, optimal)
display(HTML(certificate_html(cert_opt)))
cert_opt.summary() if hasattr(cert_opt, "summary") else cert_opt

# %%
cert_tam = verify(nlp, tampered)
display(HTML(certificate_html(cert_tam)))
print("tampered plan:", "accepted" if cert_tam.accepted else f"rejected ({', '.join(cert_tam.reasons)})")

# %%
if not STUB:
    assert optimal.ok and abs(optimal.cost - 744.09) < 0.5, optimal
    assert cert_opt.accepted, cert_opt.reasons
    assert not cert_tam.accepted and tampered.cost > 850
else:
    assert not cert_opt.accepted  # the start point is not a KKT point
plt.close("all")
