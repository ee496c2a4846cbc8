"""`compile_nlp`: a Pyomo model -> a :class:`CompiledNLP` with exact sparse derivatives (CasADi SX).

The data of the model (its mutable ``Param`` s) enter the compiled functions as a parameter vector ``p``: one
compilation serves every instance of the same structure, and :meth:`CompiledNLP.with_data` turns it into another
instance without compiling again. See docs/nlp.md for the conventions (variable/row order, bounds, fixed variables,
maximisation, parameters, fingerprints).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import casadi as ca
import numpy as np
import scipy.sparse as sp

from poso_sim.errors import PosoError

# Pyomo (0.7 s to import beside scipy) and the walker built on it are imported where a model is compiled or linked:
# loading compiled functions from disk, evaluating them and changing their data (a verifier) never imports Pyomo.

__all__ = [
    "CompiledNLP", "compile_nlp", "FINGERPRINT_VERSION", "STRUCTURE_FINGERPRINT_VERSION", "NLPCompileError",
    "UnsupportedExpressionError", "finite_or_inf",
]  # fmt: skip

#: Bumped whenever the (instance) fingerprint recipe changes.
FINGERPRINT_VERSION = "poso-sim/nlp-fingerprint/v1"
#: Bumped whenever the structure fingerprint recipe changes.
STRUCTURE_FINGERPRINT_VERSION = "poso-sim/nlp-structure/v1"

_FORMAT = "poso-sim/compiled-nlp/v2"


class NLPCompileError(PosoError):
    """The Pyomo model cannot be compiled, or compiled data do not fit (message names the component at fault)."""


class UnsupportedExpressionError(NLPCompileError):
    """An expression node type has no CasADi translation (message names the node type and the row)."""


def finite_or_inf(v: Any, default: float) -> float:
    """Pyomo bound value (None for none) -> float with +-inf for none."""
    if v is None:
        return default
    f = float(v)
    if math.isnan(f):
        return default
    return f
_INF = float("inf")
_SAMPLE_SEEDS = (0x5EED0001, 0x5EED0002)
_FUNCTIONS = ("_f", "_grad", "_g", "_jac", "_hess")


class _Evaluator:
    """Fast evaluation of a CasADi Function returning one dense float64 vector.

    Uses CasADi's zero-copy buffer interface (inputs/outputs are numpy memory); one lock per evaluator makes it
    safe to share between threads and between the instances made by :meth:`CompiledNLP.with_data`. Each call
    returns a fresh array.
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

    def __deepcopy__(self, memo):  # the compiled function is shared, never copied
        return self


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


def _param_names(p: Any) -> list[str]:
    return [q.name for q in p]


class CompiledNLP:
    """A Pyomo NLP as numeric callbacks with exact first and second derivatives.

    Problem solved by backends::

        min f(x; p)   s.t.   g_lb <= g(x; p) <= g_ub,   x_lb <= x <= x_ub

    * ``x`` is the vector of the model's active **unfixed** variables in declaration order; fixed variables are
      constants (their current value at compile time).
    * ``p`` is the vector of the model's mutable Param elements (:attr:`p_names`, declaration order), held by the
      instance (:attr:`p`): every callback takes ``x`` only. :meth:`with_data` gives the instance of other data,
      sharing the compiled functions; :meth:`set_parameters` changes this instance's data in place.
    * ``g(x)`` is each active constraint's Pyomo ``body`` verbatim (its constant included); ``g_lb``/``g_ub`` are
      Pyomo's ``lb``/``ub`` (``-inf``/``+inf`` for none; equal for equalities). Bounds that depend on mutable
      Params follow the parameter values.
    * ``f`` is the objective to *minimise*: for a ``maximize`` objective ``f = -objective`` and
      :attr:`maximize` is True (:meth:`objective_value` gives the model's own sign back).
    * Sparse callbacks return values in the fixed order of ``jac_structure`` / ``hess_structure`` (the latter is
      the lower triangle, row >= col, of ``obj_factor * hess f + sum(lam_i * hess g_i)``).
    * :attr:`fingerprint` identifies the instance (structure, bounds and data), :attr:`structure_fingerprint` the
      compiled structure alone (the same for every instance :meth:`with_data` can make).
    """

    def __init__(self) -> None:  # populated by compile_nlp
        self.n: int = 0
        self.m: int = 0
        self.x_names: list[str] = []
        self.row_names: list[str] = []
        self.p_names: list[str] = []
        self.p = np.zeros(0)
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
        #: the expression reports show as a plan's cost, named by whoever hands the problem out (the registry)
        self.cost_expression: str | None = None
        self.fixed_names: list[str] = []
        self.fingerprint = ""
        self.structure_fingerprint = ""
        self.compile_seconds: dict[str, float] = {}
        self._f = self._grad = self._g = self._jac = self._hess = None  # type: ignore[assignment]
        self._expr: dict[str, tuple[_Evaluator, _Evaluator]] = {}
        # bounds that depend on p: positions in the concatenation [x_lb, x_ub, g_lb, g_ub] and their function
        self._pbound_pos = np.zeros(0, dtype=np.int64)
        self._pbound: _Evaluator | None = None
        self._x_pos: dict[str, int] | None = None
        self._row_pos: dict[str, int] | None = None
        self._p_pos: dict[str, int] | None = None
        self._var_data: list = []
        self._con_data: list = []
        self._param_data: list = []
        self._sx: dict[str, Any] = {}

    # -- sizes / structure -----------------------------------------------------------------------------------------
    @property
    def n_p(self) -> int:
        """Number of parameters (mutable Param elements)."""
        return len(self.p_names)

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

    def param_index(self, name: str) -> int:
        """Position of parameter ``name`` (Pyomo name, e.g. ``price[7]``) in ``p``; KeyError if absent."""
        if self._p_pos is None:
            self._p_pos = {s: i for i, s in enumerate(self.p_names)}
        return self._p_pos[name]

    def var_indices(self, component: str) -> np.ndarray:
        """Positions of all variables of the Var component ``component`` (e.g. ``"P_CHP"``)."""
        k = self.var_component_names.index(component)
        return np.flatnonzero(self.var_component == k)

    def row_indices(self, component: str) -> np.ndarray:
        """Positions of all rows of the Constraint component ``component``."""
        k = self.row_component_names.index(component)
        return np.flatnonzero(self.row_component == k)

    # -- data (parameters) -----------------------------------------------------------------------------------------
    def parameters(self) -> dict[str, float]:
        """The current parameter values by name."""
        return dict(zip(self.p_names, self.p.tolist()))

    def _p_vector(self, values: Any) -> np.ndarray:
        """A full parameter vector from an array (all of ``p``) or a mapping name -> value (the others kept)."""
        if isinstance(values, Mapping):
            p = self.p.copy()
            for name, val in values.items():
                try:
                    p[self.param_index(name)] = float(val)
                except KeyError:
                    raise NLPCompileError(f"parameter {name!r} is not a parameter of this problem") from None
        else:
            p = np.array(values, dtype=np.float64).reshape(-1)
            if p.size != self.n_p:
                raise NLPCompileError(f"parameter vector has {p.size} entries, the problem has {self.n_p}")
        bad = np.flatnonzero(~np.isfinite(p))
        if bad.size:
            raise NLPCompileError(f"parameter {self.p_names[int(bad[0])]} is {p[int(bad[0])]}, not a finite number")
        return np.ascontiguousarray(p)

    def set_parameters(self, values: Any) -> "CompiledNLP":
        """Change this instance's data in place: ``values`` is a full vector or a mapping name -> value.

        The parameter-dependent bounds and the :attr:`fingerprint` follow; the compiled functions are untouched.
        Returns ``self``. For an instance others hold (a cached problem, one a KKT checker has seen: checkers are
        cached per problem object and keep its bounds and fingerprint) use :meth:`with_data` instead.
        """
        self.p = self._p_vector(values)
        self._refresh_bounds()
        self.fingerprint = _compute_fingerprint(self)
        return self

    def with_data(self, values: Any) -> "CompiledNLP":
        """A new instance with the data ``values`` (vector or mapping), sharing this one's compiled functions."""
        other = self._copy()
        return other.set_parameters(values)

    def with_model(self, model: Any) -> "CompiledNLP":
        """A new instance linked to ``model`` (a model of the same structure) and taking its data.

        Variables, constraints and mutable Params are matched by name (an error names the first difference); the
        parameter values, bounds and start point ``x0`` are read from ``model``.
        """
        other = self._copy()
        other._link(model)
        other._read_model_data()
        return other

    def _copy(self) -> "CompiledNLP":
        other = copy.copy(self)
        for k in ("p", "x_lb", "x_ub", "g_lb", "g_ub", "x0"):
            setattr(other, k, getattr(self, k).copy())
        other.compile_seconds = dict(self.compile_seconds)
        return other

    def _refresh_bounds(self) -> None:
        if self._pbound is None or self._pbound_pos.size == 0:
            return
        vals = self._pbound(self.p)
        n, m = self.n, self.m
        for pos, v in zip(self._pbound_pos.tolist(), vals.tolist()):
            arr, i = ((self.x_lb, pos) if pos < n else (self.x_ub, pos - n) if pos < 2 * n
                      else (self.g_lb, pos - 2 * n) if pos < 2 * n + m else (self.g_ub, pos - 2 * n - m))
            arr[i] = finite_or_inf(v, -_INF if pos < n or 2 * n <= pos < 2 * n + m else _INF)

    def _link(self, model: Any) -> None:
        """Attach the Pyomo components of ``model`` (same names as the compiled problem's)."""
        free = [v for v in _all_vars(model) if not v.fixed]
        if [v.name for v in free] != self.x_names:
            raise NLPCompileError("the model's variables differ from the compiled problem's" + _first_diff(
                [v.name for v in free], self.x_names))
        cons = _all_constraints(model)
        if [c.name for c in cons] != self.row_names:
            raise NLPCompileError("the model's constraints differ from the compiled problem's" + _first_diff(
                [c.name for c in cons], self.row_names))
        params = _mutable_params(model)
        if [q.name for q in params] != self.p_names:
            raise NLPCompileError("the model's mutable Params differ from the compiled problem's" + _first_diff(
                [q.name for q in params], self.p_names))
        self._var_data, self._con_data, self._param_data = free, cons, params

    def _read_model_data(self) -> None:
        """Parameter values, bounds and ``x0`` from the linked model; the fingerprint follows."""
        self.p = np.array([_param_value(q) for q in self._param_data], dtype=np.float64)
        self.x_lb, self.x_ub, self.x0 = _var_bounds_and_start(self._var_data)
        g_lb, g_ub = np.empty(self.m), np.empty(self.m)
        for r, c in enumerate(self._con_data):
            g_lb[r] = finite_or_inf(c.lb, -_INF)
            g_ub[r] = finite_or_inf(c.ub, _INF)
        self.g_lb, self.g_ub = g_lb, g_ub
        self.fingerprint = _compute_fingerprint(self)

    # -- callbacks -------------------------------------------------------------------------------------------------
    def _vec(self, x: Any) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float64).reshape(-1)
        if x.size != self.n:
            raise ValueError(f"x has {x.size} entries, the NLP has {self.n} variables")
        return x

    def f(self, x: Any) -> float:
        """Objective to minimise (negated model objective when maximising)."""
        return float(self._f(self._vec(x), self.p)[0])

    def objective_value(self, x: Any) -> float:
        """The model's objective with its own sign."""
        v = self.f(x)
        return -v if self.maximize else v

    def grad(self, x: Any) -> np.ndarray:
        """Dense gradient of :meth:`f`."""
        return self._grad(self._vec(x), self.p)

    def g(self, x: Any) -> np.ndarray:
        """Constraint bodies, length ``m``."""
        if self.m == 0:
            return np.zeros(0)
        return self._g(self._vec(x), self.p)

    def jac(self, x: Any) -> np.ndarray:
        """Jacobian values in the order of :attr:`jac_structure`."""
        if self.m == 0:
            return np.zeros(0)
        return self._jac(self._vec(x), self.p)

    def jac_sparse(self, x: Any) -> sp.csr_matrix:
        """Jacobian as an ``m x n`` CSR matrix."""
        r, c = self.jac_structure
        return sp.csr_matrix((self.jac(x), (r, c)), shape=(self.m, self.n))

    def hess(self, x: Any, lam: Any, obj_factor: float = 1.0) -> np.ndarray:
        """Lower-triangle values of the Lagrangian Hessian, order of :attr:`hess_structure`."""
        lam = np.ascontiguousarray(lam, dtype=np.float64).reshape(-1)
        if lam.size != self.m:
            raise ValueError(f"lam has {lam.size} entries, the NLP has {self.m} rows")
        return self._hess(self._vec(x), self.p, lam, np.array([obj_factor], dtype=np.float64))

    def hess_sparse(self, x: Any, lam: Any, obj_factor: float = 1.0, *, full: bool = False) -> sp.csr_matrix:
        """Lagrangian Hessian as CSR: the lower triangle, or the full symmetric matrix with ``full=True``."""
        r, c = self.hess_structure
        h = sp.csr_matrix((self.hess(x, lam, obj_factor), (r, c)), shape=(self.n, self.n))
        if full:
            h = (h + sp.tril(h, k=-1).T).tocsr()
        return h

    def function(self, name: str) -> ca.Function:
        """The compiled CasADi Function ``"f"``, ``"grad_f"``, ``"g"``, ``"jac_g"`` or ``"hess_lag"``.

        Inputs ``(x, p)``; ``hess_lag`` takes ``(x, p, lam, obj_factor)``. Pass :attr:`p` for this instance's data
        (e.g. as the ``p`` of a CasADi ``nlpsol``).
        """
        attr = {"f": "_f", "grad_f": "_grad", "g": "_g", "jac_g": "_jac", "hess_lag": "_hess"}.get(name)
        if attr is None:
            raise KeyError(f"no compiled function {name!r}; known: f, grad_f, g, jac_g, hess_lag")
        return getattr(self, attr).fn

    # -- named expressions -----------------------------------------------------------------------------------------
    def expr(self, name: str, x: Any) -> float:
        """Value of the compiled named expression ``name`` (see ``compile_nlp(expressions=...)``)."""
        return float(self._expr_pair(name)[0](self._vec(x), self.p)[0])

    def expr_grad(self, name: str, x: Any) -> np.ndarray:
        """Dense gradient of the compiled named expression ``name``."""
        return self._expr_pair(name)[1](self._vec(x), self.p)

    def has_expr(self, name: str) -> bool:
        return name in self._expr

    def cost(self, x: Any) -> float:
        """The reported cost at ``x``: the expression :attr:`cost_expression` names, else the objective's value."""
        if self.cost_expression:
            return self.expr(self.cost_expression, x)
        return self.objective_value(x)

    def true_cost(self, x: Any) -> float:
        """``expr("true_cost", x)``: kept for the callers that report the PoSo cost under this name."""
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
        "n", "m", "x_names", "row_names", "p_names", "p", "x_lb", "x_ub", "g_lb", "g_ub", "x0", "var_component",
        "var_component_names", "row_component", "row_component_names", "row_kind", "jac_structure",
        "hess_structure", "maximize", "objective_name", "expression_names", "fixed_names", "fingerprint",
        "structure_fingerprint", "compile_seconds", "_pbound_pos",
    )  # fmt: skip

    def to_bytes(self) -> bytes:
        """A self-contained encoding (CasADi's own serialisation of the functions, plain data for the rest).

        The link to the Pyomo model (used by :meth:`load_into_model`) is not included; :meth:`from_bytes` can
        restore it from a model built the same way.
        """
        import pickle

        blob = {
            "format": _FORMAT,
            "casadi": ca.__version__,
            "plain": {k: getattr(self, k) for k in self._PLAIN},
            "functions": {k: getattr(self, k).fn.serialize() for k in _FUNCTIONS},
            "pbound": None if self._pbound is None else self._pbound.fn.serialize(),
            "expr": {nm: (a.fn.serialize(), b.fn.serialize()) for nm, (a, b) in self._expr.items()},
        }
        return pickle.dumps(blob, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def from_bytes(cls, data: bytes, model: Any = None) -> "CompiledNLP":
        """Inverse of :meth:`to_bytes`.

        With ``model`` (a model of the same structure, e.g. another instance), re-links its variables,
        constraints and mutable Params (names must match) and takes its data (parameter values, bounds, ``x0``):
        a compiled structure loaded from disk serves any instance of it.
        """
        import pickle

        blob = pickle.loads(data)
        if not isinstance(blob, dict) or blob.get("format") != _FORMAT:
            raise NLPCompileError("not a compiled poso-sim NLP of this format")
        if blob.get("casadi") != ca.__version__:
            raise NLPCompileError(f"compiled with casadi {blob.get('casadi')}, this is {ca.__version__}")
        nlp = cls()
        for k, v in blob["plain"].items():
            setattr(nlp, k, v)
        for k, text in blob["functions"].items():
            setattr(nlp, k, _Evaluator(ca.Function.deserialize(text)))
        if blob.get("pbound") is not None:
            nlp._pbound = _Evaluator(ca.Function.deserialize(blob["pbound"]))
        nlp._expr = {
            nm: (_Evaluator(ca.Function.deserialize(a)), _Evaluator(ca.Function.deserialize(b)))
            for nm, (a, b) in blob["expr"].items()
        }
        if model is not None:
            nlp._link(model)
            nlp._read_model_data()
        return nlp

    def __repr__(self) -> str:
        return (
            f"CompiledNLP(n={self.n}, m={self.m}, n_p={self.n_p}, nnz_jac={self.nnz_jac}, nnz_hess={self.nnz_hess}, "
            f"objective={self.objective_name!r}{' (maximize)' if self.maximize else ''}, "
            f"fingerprint={self.fingerprint[:12]}...)"
        )


# ---- model access ------------------------------------------------------------------------------------------------
def _all_vars(model: Any) -> list:
    from pyomo.core import SortComponents, Var  # heavy: see the module top

    return list(model.component_data_objects(Var, active=True, descend_into=True, sort=SortComponents.deterministic))


def _all_constraints(model: Any) -> list:
    from pyomo.core import Constraint, SortComponents  # heavy: see the module top

    return list(
        model.component_data_objects(Constraint, active=True, descend_into=True, sort=SortComponents.deterministic)
    )


def _mutable_params(model: Any) -> list:
    """The mutable Param elements of ``model`` in declaration order (the parameter vector's order)."""
    from pyomo.core import Param, SortComponents  # heavy: see the module top

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


# ---- fingerprints ------------------------------------------------------------------------------------------------
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


class _Hasher:
    """SHA-256 over tagged, length-prefixed fields."""

    def __init__(self, version: str):
        self.h = hashlib.sha256()
        self.bytes("version", version.encode())

    def bytes(self, tag: str, data: bytes) -> None:
        self.h.update(tag.encode() + b":" + len(data).to_bytes(8, "little"))
        self.h.update(data)

    def arr(self, tag: str, a: np.ndarray, dtype: str) -> None:
        self.bytes(tag, np.ascontiguousarray(a, dtype=dtype).tobytes())

    def values(self, tag: str, vals: np.ndarray) -> None:
        vals = _round_bits(vals)
        vals[np.isnan(vals)] = np.nan  # one canonical NaN bit pattern
        self.arr(tag, vals, "<f8")

    def hexdigest(self) -> str:
        return self.h.hexdigest()


def _compute_fingerprint(nlp: CompiledNLP) -> str:
    """The instance: names, bounds, sparsity, and f, g, J at two fixed points of the box with this data ``p``.

    Two instances of one structure differ in the sampled values as soon as their data differ (beyond the 36-bit
    rounding of the hashed values): the data are hashed through what they do to the problem.
    """
    h = _Hasher(FINGERPRINT_VERSION)
    h.bytes("sizes", json.dumps([nlp.n, nlp.m, nlp.maximize]).encode())
    h.bytes("x_names", "\n".join(nlp.x_names).encode())
    h.bytes("row_names", "\n".join(nlp.row_names).encode())
    for tag, arr in (("x_lb", nlp.x_lb), ("x_ub", nlp.x_ub), ("g_lb", nlp.g_lb), ("g_ub", nlp.g_ub)):
        h.arr(tag, _round_bits(arr), "<f8")
    h.arr("jac_rows", nlp.jac_structure[0], "<i8")
    h.arr("jac_cols", nlp.jac_structure[1], "<i8")
    h.arr("hess_rows", nlp.hess_structure[0], "<i8")
    h.arr("hess_cols", nlp.hess_structure[1], "<i8")
    for seed in _SAMPLE_SEEDS:
        x = _sample_point(nlp.x_lb, nlp.x_ub, seed)
        with np.errstate(all="ignore"):
            vals = np.concatenate([[nlp.f(x)], nlp.g(x), nlp.jac(x)])
        h.values(f"values{seed}", vals)
    return h.hexdigest()


def _compute_structure_fingerprint(nlp: CompiledNLP) -> str:
    """The compiled functions alone: names, parameters, sparsity, and f, g, J, bounds(p) at fixed (x, p) points.

    Independent of the data and of the bounds, so every instance of one structure shares it.
    """
    h = _Hasher(STRUCTURE_FINGERPRINT_VERSION)
    h.bytes("sizes", json.dumps([nlp.n, nlp.m, nlp.n_p, nlp.maximize, nlp.objective_name]).encode())
    for tag in ("x_names", "row_names", "p_names", "expression_names"):
        h.bytes(tag, "\n".join(getattr(nlp, tag)).encode())
    h.bytes("row_kind", "\n".join(nlp.row_kind.tolist()).encode())
    h.arr("jac_rows", nlp.jac_structure[0], "<i8")
    h.arr("jac_cols", nlp.jac_structure[1], "<i8")
    h.arr("hess_rows", nlp.hess_structure[0], "<i8")
    h.arr("hess_cols", nlp.hess_structure[1], "<i8")
    h.arr("pbound_pos", nlp._pbound_pos, "<i8")
    for seed in _SAMPLE_SEEDS:
        x = np.ascontiguousarray(0.5 + _splitmix_uniform(nlp.n, seed))
        p = np.ascontiguousarray(0.5 + _splitmix_uniform(nlp.n_p, seed ^ 0xDA7A))
        with np.errstate(all="ignore"):
            parts = [nlp._f(x, p), nlp._g(x, p) if nlp.m else np.zeros(0), nlp._jac(x, p) if nlp.m else np.zeros(0)]
            parts += [nlp._expr[nm][0](x, p) for nm in nlp.expression_names]
            if nlp._pbound is not None:
                parts.append(nlp._pbound(p))
        h.values(f"values{seed}", np.concatenate(parts))
    return h.hexdigest()


# ---- compilation, step by step -------------------------------------------------------------------------------------
@dataclass
class _Variables:
    free: list
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
    comp_ids: dict[str, int] = {}
    component = np.empty(len(free), dtype=np.int32)
    for i, v in enumerate(free):
        component[i] = comp_ids.setdefault(v.parent_component().name, len(comp_ids))
    return _Variables(free, fixed_names, x_lb, x_ub, x0, component, list(comp_ids))


def _walk_constraints(model: Any, conv: SXConverter) -> _Rows:
    cons = _all_constraints(model)
    m = len(cons)
    R = _Rows(cons=cons, lb=np.empty(m), ub=np.empty(m), const=np.zeros(m), kind=np.empty(m, dtype="<U4"),
              component=np.empty(m, dtype=np.int32))
    comp_ids: dict[str, int] = {}
    native = _native_types()
    for r, c in enumerate(cons):
        name = c.name
        R.names.append(name)
        conv.context = f"constraint {name}"
        R.component[r] = comp_ids.setdefault(c.parent_component().name, len(comp_ids))
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
                acc = acc + t
            R.nl_rows.append(r)
            R.nl_terms.append(acc)
    R.component_names = list(comp_ids)
    return R


def _native_types() -> set:
    from pyomo.core.expr.numvalue import native_numeric_types  # heavy: see the module top

    return native_numeric_types


def _is_plain_number(e: Any, native: set | None = None) -> bool:
    """True for None, numbers and constant expressions; False for what may hold a mutable Param (or a Var)."""
    if e is None or e.__class__ in (native if native is not None else _native_types()):
        return True
    is_constant = getattr(e, "is_constant", None)
    return is_constant is None or bool(is_constant())


def _parametric_bounds(V: _Variables, R: _Rows, conv: SXConverter) -> tuple[np.ndarray, list]:
    """Bounds that depend on mutable Params: positions in [x_lb, x_ub, g_lb, g_ub] and their SX in p."""
    n, m = len(V.free), len(R.cons)
    pos: list[int] = []
    exprs: list = []
    rows = [R.cons[r] for r in R.param_bounded]
    native = _native_types()
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
        from pyomo.core import Objective  # heavy: see the module top

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


def _build_functions(nlp: CompiledNLP, x: Any, p: Any, f_sx: Any, g_sx: Any, expr_sx: dict, pbound: list,
                     cse: bool, timings: dict) -> None:
    """Exact derivatives (CasADi AD on the SX graph) and the compiled Functions, all with inputs (x, p)."""
    t = time.perf_counter()
    n, m = x.numel(), g_sx.numel()
    opts = _function_opts(cse)
    lam = ca.SX.sym("lam", m)
    sigma = ca.SX.sym("obj_factor")
    grad_sx = ca.densify(ca.gradient(f_sx, x)) if n else ca.SX(0, 1)
    jac_sx = ca.jacobian(g_sx, x)
    lag = sigma * f_sx + (ca.dot(lam, g_sx) if m else 0)
    hess_full, _ = ca.hessian(lag, x)
    hess_lo = ca.tril(hess_full)
    timings["derivatives"] = time.perf_counter() - t

    t = time.perf_counter()
    nlp._f = _Evaluator(ca.Function("f", [x, p], [f_sx], opts))
    nlp._grad = _Evaluator(ca.Function("grad_f", [x, p], [grad_sx], opts))
    nlp._g = _Evaluator(ca.Function("g", [x, p], [ca.densify(g_sx)], opts))
    nlp._jac = _Evaluator(ca.Function("jac_g", [x, p], [jac_sx.nz[:]], opts))
    nlp._hess = _Evaluator(ca.Function("hess_lag", [x, p, lam, sigma], [hess_lo.nz[:]], opts))
    for i, (nm, e) in enumerate(expr_sx.items()):
        ge = ca.densify(ca.gradient(e, x)) if n else ca.SX(0, 1)
        nlp._expr[nm] = (
            _Evaluator(ca.Function(f"expr_{i}", [x, p], [e], opts)),
            _Evaluator(ca.Function(f"expr_grad_{i}", [x, p], [ge], opts)),
        )
    if pbound:
        nlp._pbound = _Evaluator(ca.Function("bounds", [p], [ca.densify(ca.vertcat(*pbound))], opts))
    nlp.jac_structure = _triplet(jac_sx.sparsity())
    nlp.hess_structure = _triplet(hess_lo.sparsity())
    nlp._sx = {"x": x, "p": p, "f": f_sx, "g": g_sx, "lam": lam, "obj_factor": sigma}
    timings["functions"] = time.perf_counter() - t


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
    """Compile a Pyomo model (or block) into a :class:`CompiledNLP`.

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
    from pyomo.core import maximize  # heavy: see the module top
    from pyomo.core.base.expression import NamedExpressionData

    from poso_sim.nlp.walker import SXConverter

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    V = _collect_variables(model, relax_integrality)
    params = _mutable_params(model) if parameters else []
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
    if is_max:
        f_sx = -f_sx
    expr_sx: dict[str, Any] = {}
    for nm in _expression_names(model, expressions):
        comp = _resolve_named(model, nm)
        conv.context = f"expression {nm}"
        body = comp.expr if isinstance(comp, NamedExpressionData) else comp
        if body is None:
            raise NLPCompileError(f"expression {nm} is empty")
        expr_sx[nm] = _walk_scalar(conv, body, x, p, n, n_p)
    timings["walk_objective_expressions"] = time.perf_counter() - t

    t = time.perf_counter()
    g_sx = _assemble_g(x, p, R, n, n_p)
    timings["assemble"] = time.perf_counter() - t

    nlp = CompiledNLP()
    _build_functions(nlp, x, p, f_sx, g_sx, expr_sx, pbound_sx, cse, timings)
    nlp.n, nlp.m = n, len(R.cons)
    nlp.x_names, nlp.row_names, nlp.p_names = [v.name for v in V.free], R.names, _param_names(params)
    nlp.p = p_values
    nlp.x_lb, nlp.x_ub, nlp.g_lb, nlp.g_ub, nlp.x0 = V.x_lb, V.x_ub, R.lb, R.ub, V.x0
    nlp.var_component, nlp.var_component_names = V.component, V.component_names
    nlp.row_component, nlp.row_component_names = R.component, R.component_names
    nlp.row_kind = R.kind
    nlp.maximize = is_max
    nlp.objective_name = None if obj is None else obj.name
    nlp.expression_names = tuple(expr_sx)
    nlp.fixed_names = V.fixed_names
    nlp._var_data, nlp._con_data, nlp._param_data = V.free, R.cons, params
    nlp._pbound_pos = pbound_pos

    t = time.perf_counter()
    nlp._refresh_bounds()
    nlp.fingerprint = _compute_fingerprint(nlp)
    nlp.structure_fingerprint = _compute_structure_fingerprint(nlp)
    timings["fingerprint"] = time.perf_counter() - t
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
