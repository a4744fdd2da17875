"""README.md shows examples/quickstart.py verbatim (the integration tests run that file)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_quickstart_is_the_example_file():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    example = (ROOT / "examples" / "quickstart.py").read_text()
    assert block == example
    assert len(example.splitlines()) <= 25
    ast.parse(example)
