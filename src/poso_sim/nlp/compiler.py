"""The compiler: a Pyomo model -> a :class:`~poso_sim.nlp.compiled.CompiledNLP` with exact sparse derivatives
(CasADi SX), and the link between a compiled problem and a Pyomo model of its structure.

This is the Pyomo side of :mod:`poso_sim.nlp`; it imports Pyomo (0.7 s beside scipy) at its top. The compiled
problem it produces lives in :mod:`poso_sim.nlp.compiled`, which never imports Pyomo, so a verifier that loads
compiled functions from disk never imports this module. See docs/nlp.md for the conventions (variable/row order,
bounds, fixed variables, maximisation, parameters, fingerprints).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import casadi as ca
import numpy as np
import scipy.sparse as sp
from pyomo.core import Constraint, Objective, Param, SortComponents, Var, maximize
from pyomo.core.base.component_namer import index_repr
from pyomo.core.base.expression import NamedExpressionData
from pyomo.core.expr.numvalue import native_numeric_types

from poso_sim.nlp.compiled import CompiledNLP, NLPCompileError, finite_or_inf
from poso_sim.nlp.walker import SXConverter, sx_add

__all__ = ["compile_nlp", "compile_with_shared", "link_model", "shared_spec", "with_model"]

_INF = float("inf")


# ---- linking a model to a compiled problem -------------------------------------------------------------------------
def link_model(nlp: CompiledNLP, model: Any) -> CompiledNLP:
    """Attach the Pyomo components of ``model`` (a model of ``nlp``'s structure) to ``nlp``, for
    ``load_into_model``/``x_from_model``; variables, constraints and mutable Params are matched by name (an error
    names the first difference). Returns ``nlp``."""
    free = [v for v in _all_vars(model) if not v.fixed]
    cons = _all_constraints(model)
    params = _mutable_params(model)
    for what, datas, names in (("variables", free, nlp.x_names), ("constraints", cons, nlp.row_names),
                               ("mutable Params", params, nlp.p_names)):
        own = _data_names(datas)[0]
        if own != names:
            raise NLPCompileError(f"the model's {what} differ from the compiled problem's" + _first_diff(own, names))
    nlp.attach_model(free, cons, params)
    return nlp


def with_model(nlp: CompiledNLP, model: Any) -> CompiledNLP:
    """A new instance of ``nlp``'s compiled functions linked to ``model`` (a model of the same structure, e.g.
    another instance) and taking its data: parameter values, bounds and start point ``x0`` are read from it."""
    probe = link_model(nlp._copy(), model)
    x_lb, x_ub, x0 = _var_bounds_and_start(probe._var_data)
    g_lb = np.array([finite_or_inf(c.lb, -_INF) for c in probe._con_data], dtype=np.float64)
    g_ub = np.array([finite_or_inf(c.ub, _INF) for c in probe._con_data], dtype=np.float64)
    p = np.array([_param_value(q) for q in probe._param_data], dtype=np.float64)
    other = nlp.with_instance(p, x_lb, x_ub, g_lb, g_ub, x0)
    other.attach_model(probe._var_data, probe._con_data, probe._param_data)
    return other


# ---- model access ------------------------------------------------------------------------------------------------
def _all_vars(model: Any) -> list:

    return list(model.component_data_objects(Var, active=True, descend_into=True, sort=SortComponents.deterministic))


def _all_constraints(model: Any) -> list:

    return list(
        model.component_data_objects(Constraint, active=True, descend_into=True, sort=SortComponents.deterministic)
    )


def _mutable_params(model: Any) -> list:
    """The mutable Param elements of ``model`` in declaration order (the parameter vector's order)."""

    out = []
    for comp in model.component_objects(Param, active=True, descend_into=True, sort=SortComponents.deterministic):
        if comp.mutable:
            out.extend(comp.values())
    return out


def _param_value(q: Any) -> float:
    v = q.value
    try:
        return float(v)
    except (TypeError, ValueError):
        raise NLPCompileError(f"mutable Param {q.name} has no numeric value") from None


def _var_bounds_and_start(free: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x_lb = np.array([finite_or_inf(v.lb, -_INF) for v in free], dtype=np.float64)
    x_ub = np.array([finite_or_inf(v.ub, _INF) for v in free], dtype=np.float64)
    bad = np.flatnonzero(x_lb > x_ub)
    if bad.size:
        i = int(bad[0])
        raise NLPCompileError(f"variable {free[i].name} has lower bound {x_lb[i]} > upper bound {x_ub[i]}")
    x0 = np.array([0.0 if v.value is None else float(v.value) for v in free], dtype=np.float64)
    return x_lb, x_ub, np.minimum(np.maximum(x0, x_lb), x_ub)


def _first_diff(a: list[str], b: list[str]) -> str:
    for i, (u, v) in enumerate(zip(a, b)):
        if u != v:
            return f" (position {i}: model {u!r}, compiled {v!r})"
    return f" (model has {len(a)}, compiled {len(b)})"


def _triplet(s: ca.Sparsity) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = s.get_triplet()
    return np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)



def _data_names(datas: Sequence[Any]) -> tuple[list[str], np.ndarray, list[str]]:
    """Pyomo's ``name`` of each component data (an element of a Var, Constraint, Param, ...), with the position of
    its component among the components met (in order of first appearance) and those components' names.

    Pyomo names an element ``<component name>[<index>]``, computing the component's (fully qualified) name again
    for every element; here it is computed once per component and the element's index is written by Pyomo's own
    ``index_repr``, so the names are Pyomo's, character for character, at about half the cost."""
    names: list[str] = []
    component = np.empty(len(datas), dtype=np.int32)
    comp_ids: dict[str, int] = {}
    bases: dict[int, tuple[str, int]] = {}
    for i, d in enumerate(datas):
        c = d.parent_component()
        entry = bases.get(id(c))
        if entry is None:
            base = d.name if c is None else c.name  # None: a detached element, named by Pyomo as such
            entry = bases[id(c)] = (base, comp_ids.setdefault(base, len(comp_ids)))
        component[i] = entry[1]
        names.append(entry[0] if c is d or c is None else entry[0] + index_repr(d.index()))
    return names, component, list(comp_ids)



# ---- compilation, step by step -------------------------------------------------------------------------------------
@dataclass
class _Variables:
    free: list
    names: list[str]
    fixed_names: list[str]
    x_lb: np.ndarray
    x_ub: np.ndarray
    x0: np.ndarray
    component: np.ndarray
    component_names: list[str]


@dataclass
class _Rows:
    """The walked constraints: bounds, kinds, and the parts of g = A x + c + B p + monomials + nonlinear."""

    cons: list
    names: list[str] = field(default_factory=list)
    lb: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ub: np.ndarray = field(default_factory=lambda: np.zeros(0))
    const: np.ndarray = field(default_factory=lambda: np.zeros(0))
    kind: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype="<U4"))
    component: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    component_names: list[str] = field(default_factory=list)
    lin: tuple[list, list, list] = field(default_factory=lambda: ([], [], []))
    par: tuple[list, list, list] = field(default_factory=lambda: ([], [], []))
    mono_rows: list[int] = field(default_factory=list)
    mono_terms: list = field(default_factory=list)
    nl_rows: list[int] = field(default_factory=list)
    nl_terms: list = field(default_factory=list)
    param_bounded: list[int] = field(default_factory=list)  # rows whose bounds are expressions of Params


def _collect_variables(model: Any, relax_integrality: bool) -> _Variables:
    free, fixed_names = [], []
    for v in _all_vars(model):
        if v.fixed:
            fixed_names.append(v.name)
            continue
        free.append(v)
        if not relax_integrality and not v.is_continuous():
            raise NLPCompileError(
                f"variable {v.name} is integer/binary; poso_sim compiles continuous NLPs "
                "(pass relax_integrality=True to treat it as continuous)"
            )
    x_lb, x_ub, x0 = _var_bounds_and_start(free)
    names, component, component_names = _data_names(free)
    return _Variables(free, names, fixed_names, x_lb, x_ub, x0, component, component_names)


def _walk_constraints(model: Any, conv: SXConverter) -> _Rows:
    cons = _all_constraints(model)
    m = len(cons)
    names, component, component_names = _data_names(cons)
    R = _Rows(cons=cons, names=names, lb=np.empty(m), ub=np.empty(m), const=np.zeros(m),
              kind=np.empty(m, dtype="<U4"), component=component, component_names=component_names)
    native = native_numeric_types
    for r, c in enumerate(cons):
        name = names[r]
        conv.context = f"constraint {name}"
        try:
            lo, up = c.to_bounded_expression(evaluate_bounds=False)[::2]
            if not _is_plain_number(lo, native) or not _is_plain_number(up, native):  # bounds built on Params
                R.param_bounded.append(r)
                lo, up = c.lb, c.ub
        except Exception as exc:  # non-constant bounds, etc.
            raise NLPCompileError(f"constraint {name}: cannot evaluate its bounds ({' '.join(str(exc).split())})") from None
        R.lb[r] = finite_or_inf(lo, -_INF)
        R.ub[r] = finite_or_inf(up, _INF)
        R.kind[r] = "eq" if c.equality else "ineq"
        const, cols, vals, mono, nl, pterms = conv.split(c.body)
        R.const[r] = const
        if cols:
            R.lin[0].extend([r] * len(cols))
            R.lin[1].extend(cols)
            R.lin[2].extend(vals)
        if pterms:
            R.par[0].extend([r] * len(pterms))
            R.par[1].extend(k for k, _ in pterms)
            R.par[2].extend(v for _, v in pterms)
        if mono:
            R.mono_rows.extend([r] * len(mono))
            R.mono_terms.extend(mono)
        if nl:
            acc = nl[0]
            for t in nl[1:]:
                acc = sx_add(acc, t)
            R.nl_rows.append(r)
            R.nl_terms.append(acc)
    return R


def _is_plain_number(e: Any, native: set | None = None) -> bool:
    """True for None, numbers and constant expressions; False for what may hold a mutable Param (or a Var)."""
    if e is None or e.__class__ in (native if native is not None else native_numeric_types):
        return True
    is_constant = getattr(e, "is_constant", None)
    return is_constant is None or bool(is_constant())


def _parametric_bounds(V: _Variables, R: _Rows, conv: SXConverter) -> tuple[np.ndarray, list]:
    """Bounds that depend on mutable Params: positions in [x_lb, x_ub, g_lb, g_ub] and their SX in p."""
    n, m = len(V.free), len(R.cons)
    pos: list[int] = []
    exprs: list = []
    rows = [R.cons[r] for r in R.param_bounded]
    native = native_numeric_types
    # a variable's bound can only depend on Params if the bound it was given is not a number (domain bounds are);
    # Pyomo keeps the given bounds in ``_lb``/``_ub`` (checked here to skip ~10 us per variable)
    cand = [(i, v) for i, v in enumerate(V.free)
            if not (_is_plain_number(getattr(v, "_lb", v), native) and _is_plain_number(getattr(v, "_ub", v), native))]
    for base, items, attr in ((0, cand, "lower"), (n, cand, "upper"),
                              (2 * n, list(zip(R.param_bounded, rows)), "lower"),
                              (2 * n + m, list(zip(R.param_bounded, rows)), "upper")):
        for i, comp in items:
            e = getattr(comp, attr)
            if _is_plain_number(e, native):
                continue
            conv.context = f"{'bound of ' + comp.name}"
            sx = conv.to_sx(e)
            if not isinstance(sx, float):
                pos.append(base + i)
                exprs.append(sx)
    return np.asarray(pos, dtype=np.int64), exprs


def _resolve_named(model: Any, name: str) -> Any:
    comp = model.find_component(name)
    if comp is None:
        raise NLPCompileError(f"model has no component named {name!r}")
    if getattr(comp, "is_indexed", lambda: False)():
        raise NLPCompileError(f"expression {name!r} is indexed; name one of its elements, e.g. {name}[...]")
    return comp


def _select_objective(model: Any, objective: Any) -> Any:
    if objective is None:
        objs = list(model.component_data_objects(Objective, active=True, descend_into=True))
        if len(objs) > 1:
            raise NLPCompileError(
                f"model has {len(objs)} active objectives ({', '.join(o.name for o in objs[:5])}); pass objective="
            )
        return objs[0] if objs else None
    if isinstance(objective, str):
        return _resolve_named(model, objective)
    return objective


def _walk_scalar(conv: SXConverter, body: Any, x: Any, p: Any, n: int, n_p: int) -> Any:
    const, cols, vals, mono, nl, pterms = conv.split(body)
    out = _assemble_scalar(x, n, const, cols, vals, mono, nl)
    if pterms:
        out = out + ca.mtimes(_sparse_dm([0] * len(pterms), [k for k, _ in pterms], [v for _, v in pterms], 1, n_p), p)
    return out


def _expression_names(model: Any, expressions: Sequence[str] | None) -> tuple[str, ...]:
    if expressions is not None:
        return tuple(expressions)
    return tuple(getattr(model, "nlp_expressions", ()) or ())


def _assemble_g(x: Any, p: Any, R: _Rows, n: int, n_p: int) -> Any:
    m = len(R.cons)
    g_sx = ca.mtimes(_sparse_dm(*R.lin, m, n), x) + ca.DM(R.const)
    if R.par[0]:
        g_sx = g_sx + ca.mtimes(_sparse_dm(*R.par, m, n_p), p)
    if R.mono_terms:
        g_sx = g_sx + _monomials(x, m, R.mono_rows, R.mono_terms)
    if R.nl_rows:
        nl_vec = ca.SX(m, 1)
        nl_vec[R.nl_rows] = ca.vertcat(*R.nl_terms)
        g_sx = g_sx + nl_vec
    return g_sx


def _function_opts(cse: bool) -> dict:
    return {"cse": True} if cse else {}


def _build_functions(x: Any, p: Any, f_sx: Any, g_sx: Any, expr_sx: dict, pbound: list, cse: bool,
                     timings: dict, jac_sx: Any = None, keep: dict | None = None) -> dict[str, Any]:
    """Exact derivatives (CasADi AD on the SX graph) and the compiled Functions, all with inputs (x, p): the
    constructor arguments of a :class:`CompiledNLP` that hold functions and sparsity structures. ``jac_sx``: the
    Jacobian of ``g_sx``, when it is at hand; ``keep``: receives the Jacobian (``"jac_sx"``) and the Functions made
    of ``g_sx``, ``jac_sx`` and the expressions (``"made"``), which a later call with the same SX objects (the
    shared problem of the same walk) takes instead of making them again."""
    t = time.perf_counter()
    n, m = x.numel(), g_sx.numel()
    opts = _function_opts(cse)
    lam = ca.SX.sym("lam", m)
    sigma = ca.SX.sym("obj_factor")
    grad_sx = ca.densify(ca.gradient(f_sx, x)) if n else ca.SX(0, 1)
    if jac_sx is None:
        jac_sx = ca.jacobian(g_sx, x)
    if keep is not None:
        keep["jac_sx"] = jac_sx
    lag = sigma * f_sx + (ca.dot(lam, g_sx) if m else 0)
    hess_full, _ = ca.hessian(lag, x)
    hess_lo = ca.tril(hess_full)
    timings["derivatives"] = time.perf_counter() - t

    t = time.perf_counter()
    made = {} if keep is None else keep.setdefault("made", {})

    def once(tag: str, sx: Any, make: Any) -> Any:  # the Function(s) of the SX object ``sx``, made once
        hit = made.get((tag, id(sx)))
        if hit is None or hit[0] is not sx:
            hit = made[(tag, id(sx))] = (sx, make())
        return hit[1]

    functions = {
        "f": ca.Function("f", [x, p], [f_sx], opts),
        "grad_f": ca.Function("grad_f", [x, p], [grad_sx], opts),
        "g": once("g", g_sx, lambda: ca.Function("g", [x, p], [ca.densify(g_sx)], opts)),
        "jac_g": once("jac_g", jac_sx, lambda: ca.Function("jac_g", [x, p], [jac_sx.nz[:]], opts)),
        "hess_lag": ca.Function("hess_lag", [x, p, lam, sigma], [hess_lo.nz[:]], opts),
    }
    expressions = {nm: once(f"expr_{i}", e, lambda i=i, e=e: _expression_functions(i, e, x, p, opts))
                   for i, (nm, e) in enumerate(expr_sx.items())}
    timings["functions"] = time.perf_counter() - t
    return {
        "functions": functions,
        "expressions": expressions,
        "pbound": ca.Function("bounds", [p], [ca.densify(ca.vertcat(*pbound))], opts) if pbound else None,
        "jac_structure": _triplet(jac_sx.sparsity()),
        "hess_structure": _triplet(hess_lo.sparsity()),
    }


def _expression_functions(i: int, e: Any, x: Any, p: Any, opts: dict) -> tuple[Any, Any]:
    """The Functions of the ``i``-th named expression ``e``: its value and its (dense) gradient."""
    ge = ca.densify(ca.gradient(e, x)) if x.numel() else ca.SX(0, 1)
    return ca.Function(f"expr_{i}", [x, p], [e], opts), ca.Function(f"expr_grad_{i}", [x, p], [ge], opts)


def _walk_model(model: Any, objective: Any, expressions: Sequence[str] | None, relax_integrality: bool,
                parameters: bool, smooth: bool, timings: dict) -> dict[str, Any]:
    """The model walked into SX: variables, parameters, rows, objective and named expressions."""
    t0 = time.perf_counter()
    V = _collect_variables(model, relax_integrality)
    params = _mutable_params(model) if parameters else []
    p_names = _data_names(params)[0]
    p_values = np.array([_param_value(q) for q in params], dtype=np.float64)
    n, n_p = len(V.free), len(params)
    x = ca.SX.sym("x", n)
    p = ca.SX.sym("p", n_p)
    conv = SXConverter(
        ca.vertsplit(x) if n else [],
        {id(v): i for i, v in enumerate(V.free)},
        ca.vertsplit(p) if n_p else [],
        {id(q): i for i, q in enumerate(params)} if parameters else None,
    )
    conv.smooth = smooth
    timings["variables"] = time.perf_counter() - t0

    t = time.perf_counter()
    R = _walk_constraints(model, conv)
    pbound_pos, pbound_sx = _parametric_bounds(V, R, conv) if n_p else (np.zeros(0, dtype=np.int64), [])
    timings["walk_constraints"] = time.perf_counter() - t

    t = time.perf_counter()
    obj = _select_objective(model, objective)
    is_max = obj is not None and getattr(obj, "sense", None) == maximize
    if obj is not None:
        conv.context = f"objective {obj.name}"
        f_sx = _walk_scalar(conv, obj.expr if hasattr(obj, "expr") else obj, x, p, n, n_p)
    else:
        f_sx = ca.SX(0.0)
    expr_sx = {nm: _walk_expression(model, conv, nm, x, p, n, n_p) for nm in _expression_names(model, expressions)}
    timings["walk_objective_expressions"] = time.perf_counter() - t
    return {"V": V, "R": R, "params": params, "p_names": p_names, "p_values": p_values, "x": x, "p": p, "is_max": is_max,
            "objective_name": None if obj is None else obj.name, "f_sx": -f_sx if is_max else f_sx,
            "expr_sx": expr_sx, "pbound_pos": pbound_pos, "pbound_sx": pbound_sx, "conv": conv}


def _walk_expression(model: Any, conv: SXConverter, name: str, x: Any, p: Any, n: int, n_p: int) -> Any:
    comp = _resolve_named(model, name)
    conv.context = f"expression {name}"
    body = comp.expr if isinstance(comp, NamedExpressionData) else comp
    if body is None:
        raise NLPCompileError(f"expression {name} is empty")
    return _walk_scalar(conv, body, x, p, n, n_p)


def compile_nlp(
    model: Any,
    *,
    objective: Any = None,
    expressions: Sequence[str] | None = None,
    cse: bool = False,
    relax_integrality: bool = False,
    parameters: bool = True,
    smooth: bool = False,
) -> CompiledNLP:
    """Compile a Pyomo model (or block) into a :class:`CompiledNLP`, linked to ``model``.

    Args:
        model: a Pyomo ``ConcreteModel`` (or block); only active components are used.
        objective: an Objective component or its name; default: the single active Objective (a model without one
            gets ``f = 0``).
        expressions: names of scalar Expressions (or any scalar numeric component) to compile as extra functions,
            evaluated with :meth:`CompiledNLP.expr` / :meth:`CompiledNLP.expr_grad`; default: the names the model
            declares in its attribute ``nlp_expressions`` (none if it declares none).
        cse: ask CasADi to eliminate common subexpressions in the generated Functions.
        relax_integrality: allow integer/binary variables (treated as continuous); otherwise they are an error.
        parameters: mutable Params become the parameter vector ``p`` of the compiled functions (default); with
            False they are constants (their current values), as immutable Params always are.
        smooth: reject the non-differentiable functions ``abs``, ``max``, ``min`` and ``Expr_if`` with an
            :class:`UnsupportedExpressionError` naming the function and the row (a problem definition that needs
            exact KKT conditions asks for this); by default they compile, with one-sided derivatives at the kinks.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    w = _walk_model(model, objective, expressions, relax_integrality, parameters, smooth, timings)
    return _finish(w, cse, timings, t0)


def compile_with_shared(
    model: Any,
    *,
    expressions: Sequence[str] | None = None,
    cse: bool = False,
    relax_integrality: bool = False,
    parameters: bool = True,
    smooth: bool = False,
) -> tuple[CompiledNLP, CompiledNLP | None]:
    """``model``'s compiled problem and, when the model declares the shared problem that sits in it
    (``model.nlp_shared``, see :func:`shared_spec`), that problem too, from the same walk of the model.

    The shared problem is what :func:`compile_nlp` makes of the model the declaration describes: the same
    variables (bounds, start values), parameters and named expressions, the model's rows without the declared
    components (which must come last), and the named expression ``expression`` minimised as the objective called
    ``objective``. Only its objective is walked again; its derivatives and functions are built from the walk of
    ``model``. Without a declaration the second item is None.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    w = _walk_model(model, None, expressions, relax_integrality, parameters, smooth, timings)
    nlp = _finish(w, cse, timings, t0)
    spec = shared_spec(model)
    if spec is None:
        return nlp, None
    shared_timings: dict[str, float] = {}
    t0 = time.perf_counter()
    return nlp, _finish(_shared_walk(model, w, spec, shared_timings), cse, shared_timings, t0, attach=False)


def shared_spec(model: Any) -> dict[str, Any] | None:
    """The shared problem a model declares in its attribute ``nlp_shared``, checked: ``{"objective": name of the
    shared problem's objective, "expression": name of the scalar expression of this model that objective
    minimises, "extra_rows": names of this model's constraint components the shared problem does not have}``;
    None when the model declares none."""
    spec = getattr(model, "nlp_shared", None)
    if spec is None:
        return None
    if not isinstance(spec, dict) or not isinstance(spec.get("objective"), str) or not isinstance(
            spec.get("expression"), str):
        raise NLPCompileError(f"model.nlp_shared must be a mapping with the names 'objective' and 'expression', got "
                              f"{spec!r}")
    extra = spec.get("extra_rows", ())
    extra = (extra,) if isinstance(extra, str) else tuple(extra)
    return {"objective": spec["objective"], "expression": spec["expression"], "extra_rows": extra}


def _finish(w: dict[str, Any], cse: bool, timings: dict, t0: float, *, attach: bool = True) -> CompiledNLP:
    """The compiled problem of a walked model: rows assembled, derivatives and functions built, fingerprinted."""
    V, R, params = w["V"], w["R"], w["params"]
    t = time.perf_counter()
    g_sx = w.get("g_sx")
    if g_sx is None:
        g_sx = _assemble_g(w["x"], w["p"], R, len(V.free), len(params))
    timings["assemble"] = time.perf_counter() - t
    parts = _build_functions(w["x"], w["p"], w["f_sx"], g_sx, w["expr_sx"], w["pbound_sx"], cse, timings,
                             w.get("jac_sx"), w)
    w["g_sx"] = g_sx

    t = time.perf_counter()
    nlp = CompiledNLP(
        x_names=V.names, row_names=R.names, p_names=w["p_names"],
        p=w["p_values"],
        x_lb=V.x_lb, x_ub=V.x_ub, g_lb=R.lb, g_ub=R.ub, x0=V.x0,
        var_component=V.component, var_component_names=V.component_names,
        row_component=R.component, row_component_names=R.component_names, row_kind=R.kind,
        maximize=w["is_max"], objective_name=w["objective_name"], fixed_names=V.fixed_names,
        pbound_pos=w["pbound_pos"], **parts,
    )  # fmt: skip
    if attach:
        nlp.attach_model(V.free, R.cons, params)
    timings["fingerprint"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    nlp.compile_seconds = timings
    return nlp


def _shared_walk(model: Any, w: dict[str, Any], spec: dict[str, Any], timings: dict) -> dict[str, Any]:
    """The walk of the shared problem ``spec`` declares, from the walk ``w`` of ``model``: its rows (``w``'s
    without the extra components, which must be the last rows) and its objective (the expression, minimised)."""
    t = time.perf_counter()
    R = w["R"]
    extra = [k for k, name in enumerate(R.component_names) if name in set(spec["extra_rows"])]
    dropped = np.isin(R.component, extra)
    m = int(dropped.size - np.count_nonzero(dropped))
    if dropped[:m].any():
        raise NLPCompileError(f"the rows of {', '.join(spec['extra_rows'])} must come after the shared problem's rows")
    rows = _first_rows(R, m)
    V, conv, x, p = w["V"], w["conv"], w["x"], w["p"]
    n, n_p = len(V.free), len(w["params"])
    pbound_pos, pbound_sx = _parametric_bounds(V, rows, conv) if n_p else (np.zeros(0, dtype=np.int64), [])
    conv.context = f"objective {spec['objective']}"
    f_sx = _walk_scalar(conv, _resolve_named(model, spec["expression"]), x, p, n, n_p)
    timings["walk_objective_expressions"] = time.perf_counter() - t
    out = {**w, "R": rows, "is_max": False, "objective_name": spec["objective"], "f_sx": f_sx,
           "pbound_pos": pbound_pos, "pbound_sx": pbound_sx}
    if "jac_sx" in w and m < len(R.cons):  # the rows and their Jacobian are the first m of the model's
        out["g_sx"], out["jac_sx"] = w["g_sx"][:m], w["jac_sx"][:m, :]
    return out


def _first_rows(R: _Rows, m: int) -> _Rows:
    """The walked rows ``R`` restricted to its first ``m`` rows (whole components: the others come after them)."""
    def keep(rows: list[int], *values: list) -> tuple[list, ...]:
        sel = [i for i, r in enumerate(rows) if r < m]
        return ([rows[i] for i in sel],) + tuple([v[i] for i in sel] for v in values)

    n_comp = int(R.component[:m].max()) + 1 if m else 0
    mono_rows, mono_terms = keep(R.mono_rows, R.mono_terms)
    nl_rows, nl_terms = keep(R.nl_rows, R.nl_terms)
    return _Rows(cons=R.cons[:m], names=R.names[:m], lb=R.lb[:m], ub=R.ub[:m], const=R.const[:m], kind=R.kind[:m],
                 component=R.component[:m], component_names=R.component_names[:n_comp], lin=keep(*R.lin),
                 par=keep(*R.par), mono_rows=mono_rows, mono_terms=mono_terms, nl_rows=nl_rows, nl_terms=nl_terms,
                 param_bounded=[r for r in R.param_bounded if r < m])


def _sparse_dm(rows: Iterable[int], cols: Iterable[int], vals: Iterable[float], m: int, n: int) -> ca.DM:
    """Sparse DM from triplets: duplicates summed, explicit zeros dropped."""
    a = sp.coo_matrix(
        (np.asarray(vals, dtype=np.float64), (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))),
        shape=(m, n),
    ).tocsc()
    a.sum_duplicates()
    a.eliminate_zeros()
    a.sort_indices()
    spy = ca.Sparsity(m, n, a.indptr.astype(np.int64).tolist(), a.indices.astype(np.int64).tolist())
    return ca.DM(spy, a.data.tolist())


def _monomials(x: Any, m: int, rows: list[int], terms: list) -> Any:
    """``m``-vector with ``sum(coef * x[i] * x[j])`` / ``sum(coef * x[i] ** p)`` per row, built vectorised.

    Terms are grouped by kind (bilinear, or power with a given exponent); each group costs a handful of CasADi
    calls regardless of its size, and rows are summed with one sparse matrix product per group.
    """
    rows_a = np.asarray(rows, dtype=np.int64)
    coef = np.array([t[0] for t in terms], dtype=np.float64)
    ii = np.array([t[1] for t in terms], dtype=np.int64)
    jj = np.array([t[2] for t in terms], dtype=np.int64)
    pp = np.array([t[3] for t in terms], dtype=np.float64)
    out = None
    groups: list[tuple[np.ndarray, Any]] = []
    bil = np.flatnonzero(jj >= 0)
    if bil.size:
        groups.append((bil, ca.times(x[ii[bil].tolist()], x[jj[bil].tolist()])))
    powm = jj < 0
    for p in np.unique(pp[powm]):
        sel = np.flatnonzero(powm & (pp == p))
        groups.append((sel, x[ii[sel].tolist()] ** float(p)))
    for sel, vec in groups:
        S = _sparse_dm(rows_a[sel], np.arange(sel.size), coef[sel], m, sel.size)
        part = ca.mtimes(S, vec)
        out = part if out is None else out + part
    return out


def _assemble_scalar(x: Any, n: int, const: float, cols: list, vals: list, mono: list, nl: list) -> Any:
    out = ca.SX(const)
    if cols:
        out = out + ca.mtimes(_sparse_dm([0] * len(cols), cols, vals, 1, n), x)
    if mono:
        out = out + _monomials(x, 1, [0] * len(mono), mono)
    for t in nl:
        out = sx_add(out, t)
    return out
