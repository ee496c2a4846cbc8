"""The compiled NLP at run time: :class:`CompiledNLP`, a problem as sparse numeric callbacks with exact derivatives.

This module is what a verifier loads: it evaluates compiled functions (CasADi), changes their data and reads them
from bytes, and never imports Pyomo - not even inside a function. Compiling a Pyomo model, and linking one to a
compiled problem, is the compiler's work (:mod:`poso_sim.nlp.compiler`), a module of its own that imports Pyomo.

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
from typing import Any, Mapping, Sequence

import casadi as ca
import numpy as np
import scipy.sparse as sp

from poso_sim.errors import PosoError

__all__ = [
    "CompiledNLP", "FINGERPRINT_VERSION", "STRUCTURE_FINGERPRINT_VERSION", "NLPCompileError",
    "UnsupportedExpressionError", "finite_or_inf",
]  # fmt: skip

#: Bumped whenever the (instance) fingerprint recipe changes.
FINGERPRINT_VERSION = "poso-sim/nlp-fingerprint/v1"
#: Bumped whenever the structure fingerprint recipe changes.
STRUCTURE_FINGERPRINT_VERSION = "poso-sim/nlp-structure/v1"

_FORMAT = "poso-sim/compiled-nlp/v3"



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
#: the compiled functions every problem has: their CasADi names and the attributes holding their evaluators
_FUNCTIONS = {"f": "_f", "grad_f": "_grad", "g": "_g", "jac_g": "_jac", "hess_lag": "_hess"}

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

    def __init__(
        self,
        *,
        x_names: Sequence[str],
        row_names: Sequence[str],
        x_lb: Any,
        x_ub: Any,
        g_lb: Any,
        g_ub: Any,
        functions: Mapping[str, ca.Function],
        jac_structure: tuple[Any, Any],
        hess_structure: tuple[Any, Any],
        x0: Any = None,
        row_kind: Any = None,
        p_names: Sequence[str] = (),
        p: Any = None,
        var_component: Any = None,
        var_component_names: Sequence[str] = (),
        row_component: Any = None,
        row_component_names: Sequence[str] = (),
        maximize: bool = False,
        objective_name: str | None = None,
        expressions: Mapping[str, tuple[ca.Function, ca.Function]] | None = None,
        fixed_names: Sequence[str] = (),
        pbound: ca.Function | None = None,
        pbound_pos: Any = None,
        fingerprint: str | None = None,
        structure_fingerprint: str | None = None,
        compile_seconds: Mapping[str, float] | None = None,
        cost_expression: str | None = None,
    ) -> None:
        """A compiled problem from its parts (the compiler's output, or what :meth:`from_bytes` reads back).

        ``functions`` maps ``f``, ``grad_f``, ``g``, ``jac_g`` and ``hess_lag`` to CasADi Functions of ``(x, p)``
        (``hess_lag`` of ``(x, p, lam, obj_factor)``); ``expressions`` maps a name to the Functions of its value
        and gradient; ``pbound`` gives the bounds at the positions ``pbound_pos`` of ``[x_lb, x_ub, g_lb, g_ub]``
        that depend on ``p``. A fingerprint left out is computed from the parts.
        """
        self.x_names, self.row_names, self.p_names = list(x_names), list(row_names), list(p_names)
        self.n, self.m = len(self.x_names), len(self.row_names)
        n, m = self.n, self.m
        self.p = np.ascontiguousarray(np.zeros(len(self.p_names)) if p is None else p, dtype=np.float64).reshape(-1)
        self.x_lb, self.x_ub = _vector(x_lb, n, "x_lb"), _vector(x_ub, n, "x_ub")
        self.g_lb, self.g_ub = _vector(g_lb, m, "g_lb"), _vector(g_ub, m, "g_ub")
        self.x0 = np.zeros(n) if x0 is None else _vector(x0, n, "x0")
        self.var_component = np.zeros(n, dtype=np.int32) if var_component is None else np.asarray(var_component, dtype=np.int32)
        self.var_component_names = list(var_component_names)
        self.row_component = np.zeros(m, dtype=np.int32) if row_component is None else np.asarray(row_component, dtype=np.int32)
        self.row_component_names = list(row_component_names)
        self.row_kind = np.asarray(np.full(m, "ineq") if row_kind is None else row_kind, dtype="<U4")
        self.jac_structure = tuple(np.asarray(a, dtype=np.int64) for a in jac_structure)  # type: ignore[assignment]
        self.hess_structure = tuple(np.asarray(a, dtype=np.int64) for a in hess_structure)  # type: ignore[assignment]
        self.maximize = bool(maximize)
        self.objective_name = objective_name
        self.fixed_names = list(fixed_names)
        #: the expression reports show as a plan's cost, named by whoever hands the problem out (the registry)
        self.cost_expression = cost_expression
        self.compile_seconds = dict(compile_seconds or {})
        self._set_functions(functions)
        self._expr: dict[str, tuple[_Evaluator, _Evaluator]] = {
            nm: (_Evaluator(value), _Evaluator(gradient)) for nm, (value, gradient) in (expressions or {}).items()
        }
        self.expression_names: tuple[str, ...] = tuple(self._expr)
        self._pbound = None if pbound is None else _Evaluator(pbound)
        self._pbound_pos = np.zeros(0, dtype=np.int64) if pbound_pos is None else np.asarray(pbound_pos, dtype=np.int64)
        self._x_pos: dict[str, int] | None = None
        self._row_pos: dict[str, int] | None = None
        self._p_pos: dict[str, int] | None = None
        # the Pyomo components of a linked model (poso_sim.nlp.compiler.link_model); empty until one is linked
        self._var_data: Sequence[Any] = []
        self._con_data: Sequence[Any] = []
        self._param_data: Sequence[Any] = []
        self._refresh_bounds()  # the bounds that depend on p are pbound(p)
        self.fingerprint = _compute_fingerprint(self) if fingerprint is None else fingerprint
        self.structure_fingerprint = (_compute_structure_fingerprint(self) if structure_fingerprint is None
                                      else structure_fingerprint)

    def _set_functions(self, functions: Mapping[str, ca.Function]) -> None:
        if self.p.size != len(self.p_names):
            raise NLPCompileError(f"p has {self.p.size} entries for {len(self.p_names)} parameter names")
        missing = [k for k in _FUNCTIONS if k not in functions]
        if missing:
            raise NLPCompileError(f"compiled problem without the function(s) {', '.join(missing)}")
        for name, attr in _FUNCTIONS.items():
            setattr(self, attr, _Evaluator(functions[name]))

    def attach_model(self, variables: Sequence[Any], constraints: Sequence[Any], params: Sequence[Any]) -> None:
        """Hold a model's unfixed variables, constraints and mutable Params (in this problem's order), for
        :meth:`load_into_model` and :meth:`x_from_model`; the compiler's ``link_model`` checks the names first."""
        self._var_data, self._con_data, self._param_data = variables, constraints, params

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

    def with_instance(self, p: Any, x_lb: Any, x_ub: Any, g_lb: Any, g_ub: Any, x0: Any) -> "CompiledNLP":
        """A new instance with these data, bounds and start point (as read from a model of this structure, e.g. by
        the compiler's ``with_model``), sharing this one's compiled functions; the fingerprint follows."""
        other = self._copy()
        other.p = np.ascontiguousarray(p, dtype=np.float64).reshape(-1)
        if other.p.size != self.n_p:
            raise NLPCompileError(f"parameter vector has {other.p.size} entries, the problem has {self.n_p}")
        other.x_lb, other.x_ub = _vector(x_lb, self.n, "x_lb"), _vector(x_ub, self.n, "x_ub")
        other.g_lb, other.g_ub = _vector(g_lb, self.m, "g_lb"), _vector(g_ub, self.m, "g_ub")
        other.x0 = _vector(x0, self.n, "x0")
        other.fingerprint = _compute_fingerprint(other)
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
    def _plain(self) -> dict[str, Any]:
        """The constructor's arguments that are plain data (no compiled functions)."""
        return {
            "x_names": self.x_names, "row_names": self.row_names, "x_lb": self.x_lb, "x_ub": self.x_ub,
            "g_lb": self.g_lb, "g_ub": self.g_ub, "jac_structure": self.jac_structure,
            "hess_structure": self.hess_structure, "x0": self.x0, "row_kind": self.row_kind, "p_names": self.p_names,
            "p": self.p, "var_component": self.var_component, "var_component_names": self.var_component_names,
            "row_component": self.row_component, "row_component_names": self.row_component_names,
            "maximize": self.maximize, "objective_name": self.objective_name, "fixed_names": self.fixed_names,
            "pbound_pos": self._pbound_pos, "fingerprint": self.fingerprint,
            "structure_fingerprint": self.structure_fingerprint, "compile_seconds": self.compile_seconds,
        }  # fmt: skip

    def to_bytes(self, memo: dict | None = None) -> bytes:
        """A self-contained encoding (CasADi's own serialisation of the functions, plain data for the rest).

        The link to a Pyomo model (used by :meth:`load_into_model`) is not included: the compiler's
        ``with_model(nlp, model)`` links a model built the same way to the object :meth:`from_bytes` returns.
        ``memo``: a dict kept between the encodings of problems that share compiled functions (a variant and the
        shared problem compiled from its walk), so that a function both hold is serialised once.
        """
        import pickle

        memo = {} if memo is None else memo

        def text(fn: ca.Function) -> str:
            hit = memo.get(id(fn))
            if hit is None or hit[0] is not fn:
                hit = memo[id(fn)] = (fn, fn.serialize())
            return hit[1]

        blob = {
            "format": _FORMAT,
            "casadi": ca.__version__,
            "plain": self._plain(),
            "functions": {name: text(getattr(self, attr).fn) for name, attr in _FUNCTIONS.items()},
            "pbound": None if self._pbound is None else text(self._pbound.fn),
            "expr": {nm: (text(a.fn), text(b.fn)) for nm, (a, b) in self._expr.items()},
        }
        return pickle.dumps(blob, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def from_bytes(cls, data: bytes) -> "CompiledNLP":
        """Inverse of :meth:`to_bytes`: the object is made by the constructor from the stored parts."""
        import pickle

        blob = pickle.loads(data)
        if not isinstance(blob, dict) or blob.get("format") != _FORMAT:
            raise NLPCompileError("not a compiled poso-sim NLP of this format")
        if blob.get("casadi") != ca.__version__:
            raise NLPCompileError(f"compiled with casadi {blob.get('casadi')}, this is {ca.__version__}")
        load = ca.Function.deserialize
        return cls(
            **blob["plain"],
            functions={name: load(text) for name, text in blob["functions"].items()},
            expressions={nm: (load(a), load(b)) for nm, (a, b) in blob["expr"].items()},
            pbound=None if blob.get("pbound") is None else load(blob["pbound"]),
        )

    def __repr__(self) -> str:
        return (
            f"CompiledNLP(n={self.n}, m={self.m}, n_p={self.n_p}, nnz_jac={self.nnz_jac}, nnz_hess={self.nnz_hess}, "
            f"objective={self.objective_name!r}{' (maximize)' if self.maximize else ''}, "
            f"fingerprint={self.fingerprint[:12]}...)"
        )


def _vector(values: Any, size: int, what: str) -> np.ndarray:
    out = np.array(values, dtype=np.float64).reshape(-1)
    if out.size != size:
        raise NLPCompileError(f"{what} has {out.size} entries, expected {size}")
    return out


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
