"""The project's test command: pytest with its arguments, exit status 5 ("no tests collected", e.g. a marker or
-k selection that matches nothing) counted as success. Used alike by the Makefile, tox.ini and .ci/run."""

import sys

import pytest

rc = int(pytest.main(sys.argv[1:]))
if rc == pytest.ExitCode.NO_TESTS_COLLECTED:
    print("no tests collected")
    rc = 0
sys.exit(rc)
