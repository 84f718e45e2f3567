"""Every Python snippet in README.md runs as written (model paths point at the test models)."""

from __future__ import annotations

import re

import pytest

from conftest import MODELS, ROOT, real_weights

SNIPPETS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_has_snippets():
    assert len(SNIPPETS) >= 2


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
@real_weights
def test_readme_snippet_runs(index, smollm2_path, capsys):
    code = SNIPPETS[index].replace('"models/', f'"{MODELS}/')
    exec(compile(code, f"README.md snippet {index}", "exec"), {"__name__": "__readme__"})
    assert capsys.readouterr().out.strip(), "the snippet printed nothing"
