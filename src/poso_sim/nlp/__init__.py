"""poso_sim.nlp: compile any Pyomo NLP into sparse numeric callbacks with exact derivatives (CasADi SX).

Public API: :func:`compile_nlp` (with :func:`with_model` and :func:`link_model`, the Pyomo side, in
:mod:`poso_sim.nlp.compiler`), :class:`CompiledNLP` (the runtime object, :mod:`poso_sim.nlp.compiled`, no Pyomo), :class:`Solution` (a primal-dual point of a compiled NLP,
shared by the solvers and the certificate) with its file format, :class:`NLPCompileError`,
:class:`UnsupportedExpressionError`, and the problem registry :mod:`poso_sim.nlp.problems`
(:func:`register_problem`, :class:`ProblemDefinition`, :func:`load_problem`, :func:`get_problem`).
See docs/nlp.md.
"""

from poso_sim.common import lazy_exports
from poso_sim.nlp.solution import FORMAT_VERSION, Solution, load_solution, save_solution, solution_digest

# The compiled problem needs CasADi (0.1-0.2 s to import), the compiler and the walker Pyomo (0.7 s beside scipy):
# they load on first use, so that reading a solution file or the command line's help costs neither.
_LAZY = {
    "CompiledNLP": "compiled",
    "compile_nlp": "compiler",
    "link_model": "compiler",
    "with_model": "compiler",
    "STRUCTURE_FINGERPRINT_VERSION": "compiled",
    "FINGERPRINT_VERSION": "compiled",
    "NLPCompileError": "compiled",
    "UnsupportedExpressionError": "compiled",
    "SUPPORTED_NODE_TYPES": "walker",
    "ProblemDefinition": "problems",
    "Problem": "problems",
    "register_problem": "problems",
    "registered_problems": "problems",
    "load_problem": "problems",
    "get_problem": "problems",
    "get_compiled": "problems",
}

__getattr__ = lazy_exports(__name__, _LAZY, globals())


__all__ = [
    "CompiledNLP",
    "compile_nlp",
    "link_model",
    "with_model",
    "NLPCompileError",
    "UnsupportedExpressionError",
    "STRUCTURE_FINGERPRINT_VERSION",
    "FINGERPRINT_VERSION",
    "SUPPORTED_NODE_TYPES",
    "Solution",
    "save_solution",
    "load_solution",
    "solution_digest",
    "FORMAT_VERSION",
    "ProblemDefinition",
    "Problem",
    "register_problem",
    "registered_problems",
    "load_problem",
    "get_problem",
    "get_compiled",
]
