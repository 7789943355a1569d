"""The one rule of the architecture: facelift_jax never imports torch (DESIGN.md)."""

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_no_module_of_facelift_jax_imports_torch_or_bridges_at_top_level():
    offenders = []
    for path in (ROOT / "facelift_jax").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in tree.body:  # module level only; lazy imports inside functions are allowed for bridges
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in ("torch", "bridges")]
        # torch may not appear anywhere in the package, not even lazily.
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "torch" for a in node.names):
                offenders.append(f"{path.relative_to(ROOT)}: lazy import torch")
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "torch":
                offenders.append(f"{path.relative_to(ROOT)}: lazy from torch")
    assert not offenders, offenders


def test_importing_every_module_leaves_torch_unloaded():
    code = (
        "import pkgutil, sys, importlib, facelift_jax\n"
        "for m in pkgutil.walk_packages(facelift_jax.__path__, 'facelift_jax.'):\n"
        "    if m.name.endswith('__main__'): continue\n"
        "    importlib.import_module(m.name)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'bridges')]\n"
        "print(len(bad)); sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
