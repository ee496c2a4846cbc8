"""`compile_nlp`: a Pyomo model -> a :class:`CompiledNLP` with exact sparse derivatives (CasADi SX).

See docs/nlp.md for the conventions (variable/row order, bounds, fixed variables, maximisation, fingerprint).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from typing import Any, Iterable, Sequence

import casadi as ca
import numpy as np
import scipy.sparse as sp

# Pyomo (0.7 s to import beside scipy) and the walker built on it are imported where a model is compiled or linked:
# loading compiled functions from disk and evaluating them (a verifier) never imports Pyomo.

__all__ = ["CompiledNLP", "compile_nlp", "DEFAULT_EXPRESSIONS", "FINGERPRINT_VERSION"]

#: Named expressions compiled by default when the model has them (the PoSo cost and its parts).
DEFAULT_EXPRESSIONS: tuple[str, ...] = ("true_cost", "cost_grid", "cost_chp", "cost_boiler")

#: Bumped whenever the fingerprint recipe changes.
FINGERPRINT_VERSION = "poso-sim/nlp-fingerprint/v1"

_INF = float("inf")


class _Evaluator:
    """Fast evaluation of a CasADi Function returning one dense float64 vector.

    Uses CasADi's zero-copy buffer interface (inputs/outputs are numpy memory); one lock per evaluator makes it
    safe to share between threads. Each call returns a fresh array.
    """

    __slots__ = ("fn", "size", "_buf", "_trigger", "_out", "_lock", "_nin")

    def __init__(self, fn: ca.Function):
        self.fn = fn
        self.size = fn.size1_out(0) * fn.size2_out(0)
        self._nin = fn.n_in()
        self._out = np.zeros(self.size, dtype=np.float64)
        self._buf, self._trigger = fn.buffer()
        self._buf.set_res(0, memoryview(self._out))
        self._lock = threading.Lock()

    def __call__(self, *args: np.ndarray) -> np.ndarray:
        with self._lock:
            for i, a in enumerate(args):
                self._buf.set_arg(i, memoryview(a))
            self._trigger()
            return self._out.copy()

    def __getstate__(self):  # pragma: no cover - CasADi buffers are not picklable
        raise TypeError("CompiledNLP callbacks cannot be pickled; recompile from the model instead")


def _triplet(s: ca.Sparsity) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = s.get_triplet()
    return np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)


def _splitmix_uniform(n: int, seed: int) -> np.ndarray:
    """``n`` deterministic uniforms in [0, 1) (splitmix64; platform- and version-independent)."""
    with np.errstate(over="ignore"):
        z = (np.arange(1, n + 1, dtype=np.uint64) + np.uint64(seed)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def _round_bits(v: np.ndarray, bits: int = 36) -> np.ndarray:
    """Round to ``bits`` mantissa bits so last-ulp differences between math libraries do not change hashes."""
    v = np.asarray(v, dtype=np.float64)
    m, e = np.frexp(v)
    m = np.round(m * (1 << bits)) / (1 << bits)
    out = np.ldexp(m, e)
    out[out == 0.0] = 0.0  # normalise -0.0
    return out


class CompiledNLP:
    """A Pyomo NLP as numeric callbacks with exact first and second derivatives.

    Problem solved by backends::

        min f(x)   s.t.   g_lb <= g(x) <= g_ub,   x_lb <= x <= x_ub

    * ``x`` is the vector of the model's active **unfixed** variables in declaration order; fixed variables are
      constants (their current value at compile time).
    * ``g(x)`` is each active constraint's Pyomo ``body`` verbatim (its constant included); ``g_lb``/``g_ub`` are
      Pyomo's ``lb``/``ub`` (``-inf``/``+inf`` for none; equal for equalities).
    * ``f`` is the objective to *minimise*: for a ``maximize`` objective ``f = -objective`` and
      :attr:`maximize` is True (:meth:`objective_value` gives the model's own sign back).
    * Sparse callbacks return values in the fixed order of ``jac_structure`` / ``hess_structure`` (the latter is
      the lower triangle, row >= col, of ``obj_factor * hess f + sum(lam_i * hess g_i)``).
    """

    def __init__(self) -> None:  # populated by compile_nlp
        self.n: int = 0
        self.m: int = 0
        self.x_names: list[str] = []
        self.row_names: list[str] = []
        self.x_lb = self.x_ub = self.g_lb = self.g_ub = self.x0 = np.zeros(0)
        self.var_component = np.zeros(0, dtype=np.int32)
        self.var_component_names: list[str] = []
        self.row_component = np.zeros(0, dtype=np.int32)
        self.row_component_names: list[str] = []
        self.row_kind = np.zeros(0, dtype="<U4")
        self.jac_structure: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        self.hess_structure: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        self.maximize = False
        self.objective_name: str | None = None
        self.expression_names: tuple[str, ...] = ()
        self.fixed_names: list[str] = []
        self.fingerprint = ""
        self.compile_seconds: dict[str, float] = {}
        self._f = self._grad = self._g = self._jac = self._hess = None  # type: ignore[assignment]
        self._expr: dict[str, tuple[_Evaluator, _Evaluator]] = {}
        self._x_pos: dict[str, int] | None = None
        self._row_pos: dict[str, int] | None = None
        self._var_data: list = []
        self._con_data: list = []
        self._sx: dict[str, Any] = {}

    # -- sizes / structure -----------------------------------------------------------------------------------------
    @property
    def nnz_jac(self) -> int:
        return int(self.jac_structure[0].size)

    @property
    def nnz_hess(self) -> int:
        return int(self.hess_structure[0].size)

    @property
    def row_is_eq(self) -> np.ndarray:
        return self.row_kind == "eq"

    def var_index(self, name: str) -> int:
        """Position of variable ``name`` (Pyomo name, e.g. ``P_CHP[3,7]``) in ``x``; KeyError if absent/fixed."""
        if self._x_pos is None:
            self._x_pos = {s: i for i, s in enumerate(self.x_names)}
        return self._x_pos[name]

    def row_index(self, name: str) -> int:
        """Position of constraint ``name`` in ``g``; KeyError if absent."""
        if self._row_pos is None:
            self._row_pos = {s: i for i, s in enumerate(self.row_names)}
        return self._row_pos[name]

    def var_indices(self, component: str) -> np.ndarray:
        """Positions of all variables of the Var component ``component`` (e.g. ``"P_CHP"``)."""
        k = self.var_component_names.index(component)
        return np.flatnonzero(self.var_component == k)

    def row_indices(self, component: str) -> np.ndarray:
        """Positions of all rows of the Constraint component ``component``."""
        k = self.row_component_names.index(component)
        return np.flatnonzero(self.row_component == k)

    # -- callbacks -------------------------------------------------------------------------------------------------
    def _vec(self, x: Any) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float64).reshape(-1)
        if x.size != self.n:
            raise ValueError(f"x has {x.size} entries, the NLP has {self.n} variables")
        return x

    def f(self, x: Any) -> float:
        """Objective to minimise (negated model objective when maximising)."""
        return float(self._f(self._vec(x))[0])

    def objective_value(self, x: Any) -> float:
        """The model's objective with its own sign."""
        v = self.f(x)
        return -v if self.maximize else v

    def grad(self, x: Any) -> np.ndarray:
        """Dense gradient of :meth:`f`."""
        return self._grad(self._vec(x))

    def g(self, x: Any) -> np.ndarray:
        """Constraint bodies, length ``m``."""
        if self.m == 0:
            return np.zeros(0)
        return self._g(self._vec(x))

    def jac(self, x: Any) -> np.ndarray:
        """Jacobian values in the order of :attr:`jac_structure`."""
        if self.m == 0:
            return np.zeros(0)
        return self._jac(self._vec(x))

    def jac_sparse(self, x: Any) -> sp.csr_matrix:
        """Jacobian as an ``m x n`` CSR matrix."""
        r, c = self.jac_structure
        return sp.csr_matrix((self.jac(x), (r, c)), shape=(self.m, self.n))

    def hess(self, x: Any, lam: Any, obj_factor: float = 1.0) -> np.ndarray:
        """Lower-triangle values of the Lagrangian Hessian, order of :attr:`hess_structure`."""
        lam = np.ascontiguousarray(lam, dtype=np.float64).reshape(-1)
        if lam.size != self.m:
            raise ValueError(f"lam has {lam.size} entries, the NLP has {self.m} rows")
        return self._hess(self._vec(x), lam, np.array([obj_factor], dtype=np.float64))

    def hess_sparse(self, x: Any, lam: Any, obj_factor: float = 1.0, *, full: bool = False) -> sp.csr_matrix:
        """Lagrangian Hessian as CSR: the lower triangle, or the full symmetric matrix with ``full=True``."""
        r, c = self.hess_structure
        h = sp.csr_matrix((self.hess(x, lam, obj_factor), (r, c)), shape=(self.n, self.n))
        if full:
            h = (h + sp.tril(h, k=-1).T).tocsr()
        return h

    # -- named expressions -----------------------------------------------------------------------------------------
    def expr(self, name: str, x: Any) -> float:
        """Value of the compiled named expression ``name`` (see ``compile_nlp(expressions=...)``)."""
        return float(self._expr_pair(name)[0](self._vec(x))[0])

    def expr_grad(self, name: str, x: Any) -> np.ndarray:
        """Dense gradient of the compiled named expression ``name``."""
        return self._expr_pair(name)[1](self._vec(x))

    def has_expr(self, name: str) -> bool:
        return name in self._expr

    def true_cost(self, x: Any) -> float:
        """Value of the model's ``true_cost`` Expression (compiled by default when present)."""
        return self.expr("true_cost", x)

    def _expr_pair(self, name: str) -> tuple[_Evaluator, _Evaluator]:
        try:
            return self._expr[name]
        except KeyError:
            known = ", ".join(self._expr) or "none"
            raise KeyError(f"expression {name!r} was not compiled (compiled: {known})") from None

    # -- model round trip ------------------------------------------------------------------------------------------
    def load_into_model(self, x: Any) -> None:
        """Write ``x`` into the values of the model's (unfixed) variables."""
        x = self._vec(x)
        for v, val in zip(self._var_data, x.tolist()):
            v.set_value(val, skip_validation=True)

    def x_from_model(self) -> np.ndarray:
        """Current values of the model's variables (0 where None), not clipped."""
        return np.array([0.0 if v.value is None else float(v.value) for v in self._var_data], dtype=np.float64)

    def clip(self, x: Any) -> np.ndarray:
        """``x`` projected into the variable box."""
        return np.minimum(np.maximum(self._vec(x), self.x_lb), self.x_ub)

    # -- serialisation ---------------------------------------------------------------------------------------------
    _PLAIN = (
        "n", "m", "x_names", "row_names", "x_lb", "x_ub", "g_lb", "g_ub", "x0", "var_component",
        "var_component_names", "row_component", "row_component_names", "row_kind", "jac_structure",
        "hess_structure", "maximize", "objective_name", "expression_names", "fixed_names", "fingerprint",
        "compile_seconds",
    )

    def to_bytes(self) -> bytes:
        """A self-contained encoding (CasADi's own serialisation of the functions, plain data for the rest).

        The link to the Pyomo model (used by :meth:`load_into_model`) is not included; :meth:`from_bytes` can
        restore it from a model built the same way.
        """
        import pickle

        blob = {
            "format": "poso-sim/compiled-nlp/v1",
            "casadi": ca.__version__,
            "plain": {k: getattr(self, k) for k in self._PLAIN},
            "functions": {k: getattr(self, k).fn.serialize() for k in ("_f", "_grad", "_g", "_jac", "_hess")},
            "expr": {nm: (a.fn.serialize(), b.fn.serialize()) for nm, (a, b) in self._expr.items()},
        }
        return pickle.dumps(blob, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def from_bytes(cls, data: bytes, model: Any = None) -> "CompiledNLP":
        """Inverse of :meth:`to_bytes`; with ``model``, re-links the variables (their names must match)."""
        import pickle

        blob = pickle.loads(data)
        if not isinstance(blob, dict) or blob.get("format") != "poso-sim/compiled-nlp/v1":
            from poso_sim.nlp.walker import NLPCompileError  # heavy: see the module top

            raise NLPCompileError("not a compiled poso-sim NLP")
        if blob.get("casadi") != ca.__version__:
            from poso_sim.nlp.walker import NLPCompileError  # heavy: see the module top

            raise NLPCompileError(f"compiled with casadi {blob.get('casadi')}, this is {ca.__version__}")
        nlp = cls()
        for k, v in blob["plain"].items():
            setattr(nlp, k, v)
        for k, text in blob["functions"].items():
            setattr(nlp, k, _Evaluator(ca.Function.deserialize(text)))
        nlp._expr = {
            nm: (_Evaluator(ca.Function.deserialize(a)), _Evaluator(ca.Function.deserialize(b)))
            for nm, (a, b) in blob["expr"].items()
        }
        if model is not None:
            from pyomo.core import SortComponents, Var  # heavy: see the module top

            from poso_sim.nlp.walker import NLPCompileError

            free = [
                v
                for v in model.component_data_objects(Var, active=True, descend_into=True, sort=SortComponents.deterministic)
                if not v.fixed
            ]
            if [v.name for v in free] != nlp.x_names:
                raise NLPCompileError("the model's variables differ from the compiled problem's")
            nlp._var_data = free
        return nlp

    def __repr__(self) -> str:
        return (
            f"CompiledNLP(n={self.n}, m={self.m}, nnz_jac={self.nnz_jac}, nnz_hess={self.nnz_hess}, "
            f"objective={self.objective_name!r}{' (maximize)' if self.maximize else ''}, "
            f"fingerprint={self.fingerprint[:12]}...)"
        )


def _sample_point(lb: np.ndarray, ub: np.ndarray, seed: int) -> np.ndarray:
    u = _splitmix_uniform(lb.size, seed)
    flb, fub = np.isfinite(lb), np.isfinite(ub)
    x = 2.0 * u - 1.0
    both = flb & fub
    x[both] = lb[both] + u[both] * (ub[both] - lb[both])
    only_l = flb & ~fub
    x[only_l] = lb[only_l] + u[only_l]
    only_u = fub & ~flb
    x[only_u] = ub[only_u] - u[only_u]
    return x


def _compute_fingerprint(nlp: CompiledNLP) -> str:
    h = hashlib.sha256()

    def add_bytes(tag: str, data: bytes) -> None:
        h.update(tag.encode() + b":" + len(data).to_bytes(8, "little"))
        h.update(data)

    def add_arr(tag: str, a: np.ndarray, dtype: str) -> None:
        add_bytes(tag, np.ascontiguousarray(a, dtype=dtype).tobytes())

    add_bytes("version", FINGERPRINT_VERSION.encode())
    add_bytes("sizes", json.dumps([nlp.n, nlp.m, nlp.maximize]).encode())
    add_bytes("x_names", "\n".join(nlp.x_names).encode())
    add_bytes("row_names", "\n".join(nlp.row_names).encode())
    for tag, arr in (("x_lb", nlp.x_lb), ("x_ub", nlp.x_ub), ("g_lb", nlp.g_lb), ("g_ub", nlp.g_ub)):
        add_arr(tag, _round_bits(arr), "<f8")
    add_arr("jac_rows", nlp.jac_structure[0], "<i8")
    add_arr("jac_cols", nlp.jac_structure[1], "<i8")
    add_arr("hess_rows", nlp.hess_structure[0], "<i8")
    add_arr("hess_cols", nlp.hess_structure[1], "<i8")
    for seed in (0x5EED0001, 0x5EED0002):
        x = _sample_point(nlp.x_lb, nlp.x_ub, seed)
        with np.errstate(all="ignore"):
            vals = np.concatenate([[nlp.f(x)], nlp.g(x), nlp.jac(x)])
        vals = _round_bits(vals)
        vals[np.isnan(vals)] = np.nan  # one canonical NaN bit pattern
        add_arr(f"values{seed}", vals, "<f8")
    return h.hexdigest()


def _resolve_named(model: Any, name: str) -> Any:
    from poso_sim.nlp.walker import NLPCompileError  # heavy: see the module top

    comp = model.find_component(name)
    if comp is None:
        raise NLPCompileError(f"model has no component named {name!r}")
    if getattr(comp, "is_indexed", lambda: False)():
        raise NLPCompileError(f"expression {name!r} is indexed; name one of its elements, e.g. {name}[...]")
    return comp


def _function_opts(cse: bool) -> dict:
    return {"cse": True} if cse else {}


def compile_nlp(
    model: Any,
    *,
    objective: Any = None,
    expressions: Sequence[str] | None = None,
    cse: bool = False,
    relax_integrality: bool = False,
) -> CompiledNLP:
    """Compile a Pyomo model (or block) into a :class:`CompiledNLP`.

    Args:
        model: a Pyomo ``ConcreteModel`` (or block); only active components are used.
        objective: an Objective component or its name; default: the single active Objective (a model without one
            gets ``f = 0``).
        expressions: names of scalar Expressions (or any scalar numeric component) to compile as extra functions,
            evaluated with :meth:`CompiledNLP.expr` / :meth:`CompiledNLP.expr_grad`; default: those of
            :data:`DEFAULT_EXPRESSIONS` that the model has.
        cse: ask CasADi to eliminate common subexpressions in the generated Functions.
        relax_integrality: allow integer/binary variables (treated as continuous); otherwise they are an error.
    """
    from pyomo.core import Constraint, Objective, SortComponents, Var, maximize  # heavy: see the module top
    from pyomo.core.base.expression import NamedExpressionData

    from poso_sim.nlp.walker import NLPCompileError, SXConverter, finite_or_inf

    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    # ---- variables ---------------------------------------------------------------------------------------------
    all_vars = list(model.component_data_objects(Var, active=True, descend_into=True, sort=SortComponents.deterministic))
    free = []
    fixed_names = []
    for v in all_vars:
        if v.fixed:
            fixed_names.append(v.name)
        else:
            free.append(v)
            if not relax_integrality and not v.is_continuous():
                raise NLPCompileError(
                    f"variable {v.name} is integer/binary; poso_sim compiles continuous NLPs "
                    "(pass relax_integrality=True to treat it as continuous)"
                )
    n = len(free)
    index = {id(v): i for i, v in enumerate(free)}
    x_names = [v.name for v in free]
    x_lb = np.array([finite_or_inf(v.lb, -_INF) for v in free], dtype=np.float64)
    x_ub = np.array([finite_or_inf(v.ub, _INF) for v in free], dtype=np.float64)
    bad = np.flatnonzero(x_lb > x_ub)
    if bad.size:
        i = int(bad[0])
        raise NLPCompileError(f"variable {x_names[i]} has lower bound {x_lb[i]} > upper bound {x_ub[i]}")
    x0 = np.array([0.0 if v.value is None else float(v.value) for v in free], dtype=np.float64)
    x0 = np.minimum(np.maximum(x0, x_lb), x_ub)

    comp_ids: dict[str, int] = {}
    var_component = np.empty(n, dtype=np.int32)
    for i, v in enumerate(free):
        cname = v.parent_component().name
        var_component[i] = comp_ids.setdefault(cname, len(comp_ids))
    var_component_names = list(comp_ids)

    x = ca.SX.sym("x", n)
    xs = ca.vertsplit(x) if n else []
    conv = SXConverter(xs, index)
    timings["variables"] = time.perf_counter() - t0

    # ---- constraints -------------------------------------------------------------------------------------------
    t1 = time.perf_counter()
    cons = list(model.component_data_objects(Constraint, active=True, descend_into=True, sort=SortComponents.deterministic))
    m = len(cons)
    row_names: list[str] = []
    g_lb = np.empty(m)
    g_ub = np.empty(m)
    g_const = np.zeros(m)
    row_kind = np.empty(m, dtype="<U4")
    row_component = np.empty(m, dtype=np.int32)
    rcomp_ids: dict[str, int] = {}
    lin_rows: list[int] = []
    lin_cols: list[int] = []
    lin_vals: list[float] = []
    nl_rows: list[int] = []
    nl_terms: list = []
    mono_rows: list[int] = []
    mono_terms: list = []
    for r, c in enumerate(cons):
        name = c.name
        row_names.append(name)
        conv.context = f"constraint {name}"
        row_component[r] = rcomp_ids.setdefault(c.parent_component().name, len(rcomp_ids))
        try:
            lb, ub = c.lb, c.ub
        except Exception as exc:  # non-constant bounds, etc.
            raise NLPCompileError(f"constraint {name}: cannot evaluate its bounds ({exc})") from None
        g_lb[r] = finite_or_inf(lb, -_INF)
        g_ub[r] = finite_or_inf(ub, _INF)
        row_kind[r] = "eq" if c.equality else "ineq"
        const, cols, vals, mono, nl = conv.split(c.body)
        g_const[r] = const
        if cols:
            lin_rows.extend([r] * len(cols))
            lin_cols.extend(cols)
            lin_vals.extend(vals)
        if mono:
            mono_rows.extend([r] * len(mono))
            mono_terms.extend(mono)
        if nl:
            acc = nl[0]
            for t in nl[1:]:
                acc = acc + t
            nl_rows.append(r)
            nl_terms.append(acc)
    timings["walk_constraints"] = time.perf_counter() - t1

    # ---- objective ---------------------------------------------------------------------------------------------
    t2 = time.perf_counter()
    if objective is None:
        objs = list(model.component_data_objects(Objective, active=True, descend_into=True))
        if len(objs) > 1:
            raise NLPCompileError(
                f"model has {len(objs)} active objectives ({', '.join(o.name for o in objs[:5])}); pass objective="
            )
        obj = objs[0] if objs else None
    elif isinstance(objective, str):
        obj = _resolve_named(model, objective)
    else:
        obj = objective
    is_max = False
    if obj is not None:
        conv.context = f"objective {obj.name}"
        is_max = getattr(obj, "sense", None) == maximize
        o_const, o_cols, o_vals, o_mono, o_nl = conv.split(obj.expr if hasattr(obj, "expr") else obj)
    else:
        o_const, o_cols, o_vals, o_mono, o_nl = 0.0, [], [], [], []
    f_sx = _assemble_scalar(x, n, o_const, o_cols, o_vals, o_mono, o_nl)
    if is_max:
        f_sx = -f_sx

    # ---- extra expressions -------------------------------------------------------------------------------------
    if expressions is None:
        names = tuple(nm for nm in DEFAULT_EXPRESSIONS if model.find_component(nm) is not None)
    else:
        names = tuple(expressions)
    expr_sx: dict[str, Any] = {}
    for nm in names:
        comp = _resolve_named(model, nm)
        conv.context = f"expression {nm}"
        body = comp.expr if isinstance(comp, NamedExpressionData) else comp
        if body is None:
            raise NLPCompileError(f"expression {nm} is empty")
        e_const, e_cols, e_vals, e_mono, e_nl = conv.split(body)
        expr_sx[nm] = _assemble_scalar(x, n, e_const, e_cols, e_vals, e_mono, e_nl)
    timings["walk_objective_expressions"] = time.perf_counter() - t2

    # ---- assemble g --------------------------------------------------------------------------------------------
    t3 = time.perf_counter()
    A = _sparse_dm(lin_rows, lin_cols, lin_vals, m, n)
    g_sx = ca.mtimes(A, x) + ca.DM(g_const)
    if mono_terms:
        g_sx = g_sx + _monomials(x, m, mono_rows, mono_terms)
    if nl_rows:
        nl_vec = ca.SX(m, 1)
        nl_vec[nl_rows] = ca.vertcat(*nl_terms)
        g_sx = g_sx + nl_vec
    timings["assemble"] = time.perf_counter() - t3

    # ---- derivatives and functions -----------------------------------------------------------------------------
    t4 = time.perf_counter()
    opts = _function_opts(cse)
    lam = ca.SX.sym("lam", m)
    sigma = ca.SX.sym("obj_factor")
    grad_sx = ca.densify(ca.gradient(f_sx, x)) if n else ca.SX(0, 1)
    jac_sx = ca.jacobian(g_sx, x)
    lag = sigma * f_sx + (ca.dot(lam, g_sx) if m else 0)
    hess_full, _ = ca.hessian(lag, x)
    hess_lo = ca.tril(hess_full)
    timings["derivatives"] = time.perf_counter() - t4

    t5 = time.perf_counter()
    nlp = CompiledNLP()
    nlp._f = _Evaluator(ca.Function("f", [x], [f_sx], opts))
    nlp._grad = _Evaluator(ca.Function("grad_f", [x], [grad_sx], opts))
    nlp._g = _Evaluator(ca.Function("g", [x], [ca.densify(g_sx)], opts))
    nlp._jac = _Evaluator(ca.Function("jac_g", [x], [jac_sx.nz[:]], opts))
    nlp._hess = _Evaluator(ca.Function("hess_lag", [x, lam, sigma], [hess_lo.nz[:]], opts))
    for nm, e in expr_sx.items():
        ge = ca.densify(ca.gradient(e, x)) if n else ca.SX(0, 1)
        nlp._expr[nm] = (
            _Evaluator(ca.Function(f"expr_{len(nlp._expr)}", [x], [e], opts)),
            _Evaluator(ca.Function(f"expr_grad_{len(nlp._expr)}", [x], [ge], opts)),
        )
    timings["functions"] = time.perf_counter() - t5

    nlp.n, nlp.m = n, m
    nlp.x_names, nlp.row_names = x_names, row_names
    nlp.x_lb, nlp.x_ub, nlp.g_lb, nlp.g_ub, nlp.x0 = x_lb, x_ub, g_lb, g_ub, x0
    nlp.var_component, nlp.var_component_names = var_component, var_component_names
    nlp.row_component, nlp.row_component_names = row_component, list(rcomp_ids)
    nlp.row_kind = row_kind
    nlp.jac_structure = _triplet(jac_sx.sparsity())
    nlp.hess_structure = _triplet(hess_lo.sparsity())
    nlp.maximize = is_max
    nlp.objective_name = None if obj is None else obj.name
    nlp.expression_names = tuple(expr_sx)
    nlp.fixed_names = fixed_names
    nlp._var_data = free
    nlp._con_data = cons
    nlp._sx = {"x": x, "f": f_sx, "g": g_sx, "lam": lam, "obj_factor": sigma}

    t6 = time.perf_counter()
    nlp.fingerprint = _compute_fingerprint(nlp)
    timings["fingerprint"] = time.perf_counter() - t6
    timings["total"] = time.perf_counter() - t0
    nlp.compile_seconds = timings
    return nlp


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
        out = out + t
    return out
