"""The project's test command: ``python -m pytest`` with the same arguments, except that exit status 5 ("no
tests collected", e.g. a marker or -k selection that matches nothing) counts as success. Used alike by the
Makefile, tox.ini and .ci/run."""

import os
import sys

sys.path[0] = os.getcwd()  # as `python -m pytest` has it: the current directory, not .ci/

import pytest  # noqa: E402


def main() -> int:
    rc = int(pytest.main(sys.argv[1:]))
    if rc == pytest.ExitCode.NO_TESTS_COLLECTED:
        print("no tests collected")
        rc = 0
    return rc


# the guard matters: worker processes started with "spawn" (solve_plans) import this main module again
if __name__ == "__main__":
    sys.exit(main())
