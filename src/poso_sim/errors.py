"""Errors raised for bad user input. Each carries a one-line message naming what is at fault."""


class PosoError(Exception):
    """Base class of every error meant to be shown to a user as one line."""


class CaseError(PosoError):
    """A case file is malformed or inconsistent (message names the file and field)."""


class SolutionFileError(PosoError):
    """A solution file is corrupt, foreign or of an unknown version."""


class ScenarioError(PosoError):
    """A scenario file is malformed (message names the file, line and field)."""


class ConfigError(PosoError):
    """A simulation or sweep configuration is invalid (message names the field)."""


class ProblemError(PosoError):
    """A problem definition, or a ``case:`` reference to one, is invalid or unknown (message names it)."""


class ProblemMismatchError(PosoError):
    """A plan is for another problem than the one named to check it against (their fingerprints differ)."""
