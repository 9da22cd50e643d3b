"""``cgc/`` is a standalone library: it never imports the harness (``benchmarks``) or ``baselines``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CGC = Path(__file__).resolve().parents[2] / "cgc"


def test_no_module_of_cgc_imports_the_harness_or_baselines() -> None:
    offenders = []
    for path in sorted(CGC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(CGC.parent)}:{node.lineno} {n}" for n in names
                          if n.split(".")[0] in ("benchmarks", "baselines")]
    assert not offenders, offenders


def test_importing_cgc_loads_no_harness_module() -> None:
    code = ("import sys, cgc, cgc.finetune, cgc.train.pretrain, cgc.embed; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('benchmarks', 'baselines')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=CGC.parent)
    assert out.stdout.strip() == "[]"
