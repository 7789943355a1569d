"""The rules of the architecture: facelift_jax never imports torch (bridges/ does), and its modules
form no import cycle nor reach into each other's private names."""

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


def _module_imports():
    """{module: {facelift_jax modules it imports, at any level}} and [(module, private name imported)]."""
    modules = {}
    for path in (ROOT / "facelift_jax").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path

    def owner(name):  # the module a dotted name lives in
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph, private = {}, []
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps |= {owner(a.name) for a in node.names if a.name.startswith("facelift_jax")}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("facelift_jax"):
                for a in node.names:
                    deps.add(owner(f"{node.module}.{a.name}"))
                    if a.name.startswith("_"):
                        private.append((name, f"{node.module}.{a.name}"))
        # A package's __init__ re-exporting its own submodules is not a dependency on them.
        graph[name] = {d for d in deps if d and d != name and not d.startswith(name + ".")}
    return graph, private


def test_facelift_jax_has_no_import_cycle_nor_private_cross_module_import():
    graph, private = _module_imports()
    assert not private, private
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles  # lazy (function-level) imports count too


def test_random_streams_are_one_table_of_distinct_values():
    from facelift_jax import random_streams as streams

    table = {k: v for k, v in vars(streams).items() if k.isupper()}
    per_stream = {k: v for k, v in table.items() if k not in ("PROCESS_STRIDE", "VIDEO_POPULATION")}
    assert len(set(per_stream.values())) == len(per_stream), per_stream
