"""Translate Pyomo expression trees into CasADi SX expressions.

Two entry points are used by :mod:`poso_sim.nlp.compiler`:

* :meth:`SXConverter.to_sx` turns any supported Pyomo numeric expression into one SX scalar.
* :meth:`SXConverter.split` walks the *top-level additive structure* of an expression (sums, negations,
  products/divisions by constants, named expressions) and returns its constant, its linear part as
  ``(column, coefficient)`` pairs and the list of remaining nonlinear SX terms.  Linear parts are later
  assembled in one sparse matrix product, which keeps per-term Python overhead tiny.

Dispatch is on the exact Python class of each node, resolved once per class through its MRO and cached, so a
node costs one dictionary lookup plus the CasADi operation it represents.

Fixed variables are replaced by their current value (a constant). Mutable Params become **parameter symbols**
when the converter is given a parameter index (``params``): the compiled functions then take the data as an input
and an instance that differs only in those values needs no new compilation. The constant sub-expressions built on
them (Pyomo's ``NPV_*`` classes) are translated like any other expression. Without a parameter index, and for
immutable Params, they are evaluated once, at compile time. :meth:`SXConverter.split` returns the terms that are
linear in one parameter (``coef * p[k]``) separately, so they are assembled as one sparse matrix product too.
"""

from __future__ import annotations

from typing import Any, Callable

import casadi as ca
from pyomo.core.base.expression import NamedExpressionData
from pyomo.core.base.param import ParamData
from pyomo.core.base.var import VarData
from pyomo.core.expr import numeric_expr as ne
from pyomo.core.expr import relational_expr as re_
from pyomo.core.expr.base import NPV_Mixin
from pyomo.core.expr.numvalue import native_numeric_types, value

# the errors and the bound helper live with the compiled problem, which loads without Pyomo; re-exported here
from poso_sim.nlp.compiled import NLPCompileError, UnsupportedExpressionError, finite_or_inf

__all__ = ["SXConverter", "NLPCompileError", "UnsupportedExpressionError", "finite_or_inf", "SUPPORTED_NODE_TYPES"]


# Kinds of nodes, used by the dispatcher.
_CONST, _VAR, _NAMED, _SUM, _MONO, _PROD, _DIV, _POW, _NEG, _UNARY, _ABS, _IF, _MAX, _MIN, _REL, _PARAM = range(16)

_KIND_BY_CLASS: dict[type, int] = {
    ne.SumExpression: _SUM,  # LinearExpression is a subclass
    ne.MonomialTermExpression: _MONO,  # must win over ProductExpression (its base class)
    ne.ProductExpression: _PROD,
    ne.DivisionExpression: _DIV,
    ne.PowExpression: _POW,
    ne.NegationExpression: _NEG,
    ne.AbsExpression: _ABS,  # subclass of UnaryFunctionExpression: must be listed first in MRO order
    ne.UnaryFunctionExpression: _UNARY,
    ne.Expr_ifExpression: _IF,
    ne.MaxExpression: _MAX,
    ne.MinExpression: _MIN,
    re_.InequalityExpression: _REL,
    re_.EqualityExpression: _REL,
}

_UNARY_FUNCS: dict[str, Callable[[Any], Any]] = {
    "exp": ca.exp,
    "log": ca.log,
    "log10": ca.log10,
    "sqrt": ca.sqrt,
    "sin": ca.sin,
    "cos": ca.cos,
    "tan": ca.tan,
    "asin": ca.asin,
    "acos": ca.acos,
    "atan": ca.atan,
    "sinh": ca.sinh,
    "cosh": ca.cosh,
    "tanh": ca.tanh,
    "asinh": ca.asinh,
    "acosh": ca.acosh,
    "atanh": ca.atanh,
    "abs": ca.fabs,
}
#: the functions that are one CasADi operation (``log10`` is not: CasADi builds it as ``log(x) * (1 / log(10))``)
_UNARY_OPS: dict[str, int] = {
    "exp": ca.OP_EXP, "log": ca.OP_LOG, "sqrt": ca.OP_SQRT, "sin": ca.OP_SIN, "cos": ca.OP_COS, "tan": ca.OP_TAN,
    "asin": ca.OP_ASIN, "acos": ca.OP_ACOS, "atan": ca.OP_ATAN, "sinh": ca.OP_SINH, "cosh": ca.OP_COSH,
    "tanh": ca.OP_TANH, "asinh": ca.OP_ASINH, "acosh": ca.OP_ACOSH, "atanh": ca.OP_ATANH, "abs": ca.OP_FABS,
}

# ---- arithmetic on SX scalars ------------------------------------------------------------------------------------
# CasADi's operators (``a * b``, ``ca.exp(a)``) pick their overload by trying argument conversions: 20-35 us per
# operation on this machine, most of a walk's time. ``SX.binary``/``SX.unary`` take the operation code and SX
# arguments: 3-5 us. They build the same node (the operators call them after converting a float to ``SX(float)``),
# so the compiled functions are the same, byte for byte; a float with a float stays Python arithmetic.
_SX = ca.SX
_SX_BINARY = ca.SX.binary
_SX_UNARY = ca.SX.unary


def _binary(op: int, a: Any, b: Any, plain: Callable[[Any, Any], Any]) -> Any:
    ca_, cb = a.__class__, b.__class__
    if ca_ is _SX:
        if cb is _SX:
            return _SX_BINARY(op, a, b)
        if cb is float:
            return _SX_BINARY(op, a, _SX(b))
    elif ca_ is float and cb is _SX:
        return _SX_BINARY(op, _SX(a), b)
    return plain(a, b)


def sx_add(a: Any, b: Any) -> Any:
    """``a + b`` for SX scalars and floats (the node CasADi's ``+`` builds, without its argument dispatch)."""
    return _binary(ca.OP_ADD, a, b, _plain_add)


def sx_mul(a: Any, b: Any) -> Any:
    """``a * b`` for SX scalars and floats."""
    return _binary(ca.OP_MUL, a, b, _plain_mul)


def sx_div(a: Any, b: Any) -> Any:
    """``a / b`` for SX scalars and floats."""
    return _binary(ca.OP_DIV, a, b, _plain_div)


def sx_pow(a: Any, b: Any) -> Any:
    """``a ** b`` (CasADi's ``power``) for SX scalars and floats; a constant exponent gives CasADi's constpow."""
    return _binary(ca.OP_POW, a, b, _plain_pow)


def _plain_add(a: Any, b: Any) -> Any:
    return a + b


def _plain_mul(a: Any, b: Any) -> Any:
    return a * b


def _plain_div(a: Any, b: Any) -> Any:
    return a / b


def _plain_pow(a: Any, b: Any) -> Any:
    return a**b if isinstance(a, float) and isinstance(b, float) else ca.power(a, b)


SUPPORTED_NODE_TYPES = (
    "numeric constants, immutable Param, NPV_* (constant) expressions",
    "mutable Param (a parameter symbol of the compiled functions, or its value with parameters=False)",
    "Var (fixed Var -> its value)",
    "named Expression components (translated once, shared)",
    "SumExpression, LinearExpression, MonomialTermExpression, ProductExpression, DivisionExpression",
    "PowExpression, NegationExpression, AbsExpression",
    "UnaryFunctionExpression: " + ", ".join(sorted(_UNARY_FUNCS)),
    "Expr_if (with <=, <, == conditions), MaxExpression, MinExpression",
)


def _kind_of(cls: type, parametric: bool = False) -> int | None:
    if cls in native_numeric_types:
        return _CONST
    if issubclass(cls, ParamData):
        return _PARAM if parametric else _CONST
    if issubclass(cls, NPV_Mixin):
        if not parametric:
            return _CONST
        # a constant expression that may hold parameter symbols: translated as its generic node kind
        for base in cls.__mro__:
            kind = _KIND_BY_CLASS.get(base)
            if kind is not None:
                return kind
        return _CONST
    if issubclass(cls, VarData):
        return _VAR
    if issubclass(cls, NamedExpressionData):
        return _NAMED
    for base in cls.__mro__:
        kind = _KIND_BY_CLASS.get(base)
        if kind is not None:
            return kind
    # Anything else that Pyomo says is constant can still be evaluated.
    try:
        if not cls.is_potentially_variable(None):  # type: ignore[attr-defined]
            return _CONST
    except Exception:  # noqa: BLE001 - classification only
        pass
    return None


class SXConverter:
    """Pyomo -> CasADi SX translator bound to one variable vector.

    ``xs`` is the list of scalar SX elements of the decision vector and ``index`` maps ``id(VarData)`` to the
    position of that (unfixed) variable in it. ``ps``/``params`` do the same for the parameter vector (mutable
    ``ParamData``); with ``params=None`` every Param is a constant.
    """

    def __init__(self, xs: list, index: dict[int, int], ps: list | None = None, params: dict[int, int] | None = None):
        self.xs = xs
        self.index = index
        self.ps = ps or []
        self.params = params
        self._parametric = params is not None
        self.smooth = False  # True: abs, max, min and if-then-else (non-differentiable at their kinks) are errors
        self.context = "<expression>"
        self._kinds: dict[type, int | None] = {}
        self._named: dict[int, Any] = {}
        self._mono: list = []

    # -- helpers -------------------------------------------------------------------------------------------------
    def _kind(self, node: Any) -> int:
        cls = node.__class__
        try:
            kind = self._kinds[cls]
        except KeyError:
            kind = self._kinds[cls] = _kind_of(cls, self._parametric)
        if kind is None:
            raise UnsupportedExpressionError(
                f"unsupported Pyomo expression node {cls.__name__} in {self.context}"
            )
        return kind

    def _const(self, node: Any) -> float:
        if node.__class__ in native_numeric_types:
            return float(node)
        v = value(node, exception=False)
        if v is None:
            raise NLPCompileError(f"{self.context}: constant sub-expression {node} has no value")
        return float(v)

    def _var_col(self, v: Any) -> int | None:
        """Column of an unfixed variable, or None when it is fixed."""
        if v.fixed:
            return None
        try:
            return self.index[id(v)]
        except KeyError:
            raise NLPCompileError(
                f"{self.context} uses variable {v.name}, which is not an active variable of the model"
            ) from None

    def _param_pos(self, node: Any) -> int | None:
        """Position of a mutable Param element in the parameter vector, or None when it is a constant."""
        return self.params.get(id(node)) if self.params is not None else None

    def _fixed_value(self, v: Any) -> float:
        if v.value is None:
            raise NLPCompileError(f"{self.context} uses fixed variable {v.name}, which has no value")
        return float(v.value)

    # -- full translation ----------------------------------------------------------------------------------------
    def to_sx(self, node: Any) -> Any:
        """Translate one node (recursively) into an SX scalar or a Python float."""
        kind = self._kind(node)
        if kind == _CONST:
            return self._const(node)
        if kind == _VAR:
            col = self._var_col(node)
            return self._fixed_value(node) if col is None else self.xs[col]
        if kind == _PARAM:
            pos = self._param_pos(node)
            return self._const(node) if pos is None else self.ps[pos]
        if kind == _SUM:
            args = node.args
            acc = self.to_sx(args[0])
            for a in args[1:]:
                acc = sx_add(acc, self.to_sx(a))
            return acc
        if kind == _MONO:
            c, v = node.args
            return sx_mul(self.to_sx(c), self.to_sx(v))
        if kind == _PROD:
            a, b = node.args
            return sx_mul(self.to_sx(a), self.to_sx(b))
        if kind == _DIV:
            a, b = node.args
            return sx_div(self.to_sx(a), self.to_sx(b))
        if kind == _POW:
            a, b = node.args
            base = self.to_sx(a)
            if self._kind(b) == _CONST:
                p = self._const(b)
                if p == 1.0:
                    return base
                return sx_pow(base, p)  # SX ** constant -> CasADi constpow (sq for 2)
            return sx_pow(base, self.to_sx(b))
        if kind == _NEG:
            return -self.to_sx(node.args[0])
        if kind == _NAMED:
            key = id(node)
            try:
                return self._named[key]
            except KeyError:
                if node.expr is None:
                    raise NLPCompileError(f"{self.context} uses Expression {node.name}, which is empty") from None
                out = self._named[key] = self.to_sx(node.expr)
                return out
        if self.smooth and (kind in (_ABS, _IF, _MAX, _MIN) or (kind == _UNARY and node.getname() == "abs")) and (
            not isinstance(node, NPV_Mixin)  # a kink in the data only (e.g. max(domain bound, Param)) is smooth in x
        ):
            what = {_IF: "Expr_if", _MAX: "max", _MIN: "min"}.get(kind, "abs")
            raise UnsupportedExpressionError(
                f"non-smooth function {what}() in {self.context}: a smooth NLP was asked for (smooth=True)"
            )
        if kind == _UNARY or kind == _ABS:
            name = node.getname()
            fn = _UNARY_FUNCS.get(name)
            if fn is None:
                raise UnsupportedExpressionError(
                    f"unsupported function {name}() ({node.__class__.__name__}) in {self.context}"
                )
            arg = self.to_sx(node.args[0])
            if isinstance(arg, float):
                return float(fn(arg))
            op = _UNARY_OPS.get(name)
            return fn(arg) if op is None or arg.__class__ is not _SX else _SX_UNARY(op, arg)
        if kind == _IF:
            cond, a, b = (self.to_sx(t) for t in node.args)
            return ca.if_else(cond, a, b)
        if kind == _MAX or kind == _MIN:
            fn = ca.fmax if kind == _MAX else ca.fmin
            args = [self.to_sx(t) for t in node.args]
            acc = args[0]
            for t in args[1:]:
                acc = fn(acc, t)
            return acc
        if kind == _REL:
            a, b = (self.to_sx(t) for t in node.args)
            if isinstance(node, re_.EqualityExpression):
                return a == b
            return (a < b) if node.strict else (a <= b)
        raise UnsupportedExpressionError(  # pragma: no cover - every kind is handled above
            f"unsupported Pyomo expression node {node.__class__.__name__} in {self.context}"
        )

    # -- additive split ------------------------------------------------------------------------------------------
    def split(self, node: Any) -> tuple[float, list[int], list[float], list, list]:
        """Split ``node`` into ``constant + sum(coef * x[col]) + sum(monomials) + sum(nonlinear)``.

        Returns ``(constant, cols, coefs, monomials, nonlinear_terms, param_terms)``; columns may repeat
        (duplicates are summed by the caller). ``monomials`` are ``(coef, i, j, p)`` tuples meaning
        ``coef * x[i] * x[j]`` when ``j >= 0`` and ``coef * x[i] ** p`` when ``j == -1``; the caller builds them in
        vectorised CasADi operations. ``param_terms`` are ``(k, coef)`` pairs meaning ``coef * p[k]``.
        """
        cols: list[int] = []
        coefs: list[float] = []
        nl: list = []
        self._mono: list = []
        self._pterms: list = []
        const = self._split(node, 1.0, cols, coefs, nl)
        return const, cols, coefs, self._mono, nl, self._pterms

    def _linear(self, v: Any, c: float, cols: list, coefs: list) -> float:
        """The term ``c * v`` of variable `v`: its column and coefficient appended, or its value if `v` is fixed."""
        col = self._var_col(v)
        if col is None:
            return c * self._fixed_value(v)
        cols.append(col)
        coefs.append(c)
        return 0.0

    def _split(self, node: Any, c: float, cols: list, coefs: list, nl: list) -> float:
        kind = self._kind(node)
        if kind == _CONST:
            return c * self._const(node)
        if kind == _VAR:
            return self._linear(node, c, cols, coefs)
        if kind == _PARAM:
            pos = self._param_pos(node)
            if pos is None:
                return c * self._const(node)
            self._pterms.append((pos, c))
            return 0.0
        if kind == _MONO:
            k, v = node.args
            if self._kind(k) == _CONST:
                return self._linear(v, c * self._const(k), cols, coefs)
            # parametric coefficient (e.g. price[t] * P_grid[t]): an SX term, or a parameter term if v is fixed
            col = self._var_col(v)
            if col is None:
                return self._split(k, c * self._fixed_value(v), cols, coefs, nl)
            coef = self.to_sx(k)
            if isinstance(coef, float):
                cols.append(col)
                coefs.append(c * coef)
                return 0.0
            nl.append(sx_mul(sx_mul(c, coef), self.xs[col]))
            return 0.0
        if kind == _SUM:
            const = 0.0
            for a in node.args:
                const += self._split(a, c, cols, coefs, nl)
            return const
        if kind == _NEG:
            return self._split(node.args[0], -c, cols, coefs, nl)
        if kind == _NAMED:
            if node.expr is None:
                raise NLPCompileError(f"{self.context} uses Expression {node.name}, which is empty")
            return self._split(node.expr, c, cols, coefs, nl)
        if kind == _PROD:
            a, b = node.args
            ka, kb = self._kind(a), self._kind(b)
            if ka == _CONST:
                return self._split(b, c * self._const(a), cols, coefs, nl)
            if kb == _CONST:
                return self._split(a, c * self._const(b), cols, coefs, nl)
            if ka == _VAR and kb == _VAR and not a.fixed and not b.fixed:
                self._mono.append((c, self._var_col(a), self._var_col(b), 1.0))
                return 0.0
        elif kind == _POW:
            a, b = node.args
            if self._kind(a) == _VAR and not a.fixed and self._kind(b) == _CONST:
                p = self._const(b)
                if p == 1.0:
                    cols.append(self._var_col(a))
                    coefs.append(c)
                elif p == 0.0:
                    return c
                else:
                    self._mono.append((c, self._var_col(a), -1, p))
                return 0.0
        elif kind == _DIV:
            a, b = node.args
            if self._kind(b) == _CONST:
                d = self._const(b)
                if d != 0.0:
                    return self._split(a, c / d, cols, coefs, nl)
        term = self.to_sx(node)
        if isinstance(term, float):
            return c * term
        nl.append(term if c == 1.0 else sx_mul(c, term))
        return 0.0

