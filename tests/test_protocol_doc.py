"""The hand-fed example of docs/protocol.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"


def test_doc_example_runs():
    text = DOC.read_text()
    section = text.split("## Unit-testing a rule by hand", 1)[1]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)[:1]
    exec(compile(code, str(DOC), "exec"), {})
