"""README.md, and the repository's root README.md, show examples/quickstart.py verbatim (the
integration tests run that file)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPO_ROOT = ROOT.parent.parent


def test_readme_quickstart_is_the_example_file():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    example = (ROOT / "examples" / "quickstart.py").read_text()
    assert block == example
    assert len(example.splitlines()) <= 25
    ast.parse(example)


def test_root_readme_shows_the_example_file_verbatim():
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("### Python SDK", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    example = (ROOT / "examples" / "quickstart.py").read_text()
    assert block == example, "README.md's Python SDK block differs from clients/python/examples/quickstart.py"
