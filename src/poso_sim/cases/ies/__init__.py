"""Component builders of the IES dispatch model (electric DistFlow, heat network, gas, storage, hubs, objective).

Each module adds its own sets of variables and constraint families to a Pyomo model, from the plain network view
of :mod:`poso_sim.cases.ies.data`; :func:`poso_sim.cases.model.build_model` calls them in the canonical order
(docs/model.md). :mod:`~poso_sim.cases.ies.data` imports no Pyomo: the per-period data of an instance
(:func:`~poso_sim.cases.ies.data.instance_parameters`) can be computed without building a model.
"""
