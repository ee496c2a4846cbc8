"""The documentation site builds in strict mode (broken links, missing pages and bad references fail).

Skipped when the docs tools are absent; install them with ``pip install -e '.[docs]'``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("material")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    site = tmp_path / "site"
    for page in ("index.html", "getting-started/index.html", "concepts/certificate/index.html",
                 "howto/sweep-on-dask/index.html", "reference/report/index.html", "benchmarks/index.html"):
        assert (site / page).is_file(), page
    assert "plot_message_sequence" in (site / "reference/report/index.html").read_text()


def test_docs_examples_are_linked():
    """Every page the nav names exists (mkdocs checks links, this keeps the nav and the tree in step)."""
    import yaml

    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]

    def pages(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            for v in node.values():
                yield from pages(v)
        elif isinstance(node, list):
            for v in node:
                yield from pages(v)

    listed = list(pages(nav))
    assert all((ROOT / "docs" / p).is_file() for p in listed), [p for p in listed if not (ROOT / "docs" / p).is_file()]
    for sub in ("concepts", "howto", "reference"):
        for f in (ROOT / "docs" / sub).glob("*.md"):
            assert f"{sub}/{f.name}" in listed, f
