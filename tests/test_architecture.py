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


# Every Python file of the repository outside tests/: the library, the torch bridges, the
# experiment configs, the benchmarks and the scripts. Arrows may point library-ward only.
TREES = ("facelift_jax", "bridges", "configs", "benchmarks", "scripts")
# Packages the library (facelift_jax, bridges) may not import: they are not installed with it.
NOT_INSTALLED = ("configs", "benchmarks", "scripts", "tests")


def _module_imports(root: pathlib.Path, trees=TREES):
    """``({module: {repository modules it imports, at any level}}, [(module, private name imported)])``.

    Modules are named by their path under ``root`` (``benchmarks.bench_train``); a bare import of a
    file beside the importer (a script's ``import bench_model``) resolves to that file.
    """
    modules = {}
    for tree in trees:
        for path in (root / tree).rglob("*.py"):
            name = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path

    def owner(name):  # the repository module a dotted name lives in ("" if none)
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph, private = {}, []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]

        def resolve(target, package=package):
            # a sibling file first (scripts put their folder on sys.path), then the absolute name
            sibling = owner(f"{package}.{target}") if package else ""
            return sibling if sibling and sibling != package else owner(target)

        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps |= {resolve(a.name) for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from the importer's package, up level-1 packages
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    module = f"{base}.{node.module}" if node.module else base
                else:
                    module = node.module or ""
                for a in node.names:
                    dep = owner(f"{module}.{a.name}") or resolve(module)
                    deps.add(dep)
                    if a.name.startswith("_") and dep and dep != name:
                        private.append((name, f"{module}.{a.name}"))
        # A package's __init__ re-exporting its own submodules is not a dependency on them.
        graph[name] = {d for d in deps if d and d != name and not d.startswith(name + ".")}
    return graph, private


def _cycles(graph: dict) -> list[list[str]]:
    """Every import cycle a depth-first walk meets, each as ``[a, b, ..., a]``."""
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
    return cycles


def test_the_repository_has_no_import_cycle_nor_private_cross_module_import():
    graph, private = _module_imports(ROOT)
    assert any(m.startswith("benchmarks.") for m in graph) and any(m.startswith("configs.") for m in graph)
    assert not private, private
    assert not _cycles(graph), _cycles(graph)  # lazy (function-level) imports count too


def test_the_library_imports_no_experiment_config_benchmark_script_or_test():
    graph, _ = _module_imports(ROOT, TREES + ("tests",))
    bad = sorted((m, d) for m, deps in graph.items() if m.split(".")[0] in ("facelift_jax", "bridges")
                 for d in deps if d.split(".")[0] in NOT_INSTALLED)
    assert not bad, bad
    # the experiment configs do build on the library's config
    assert "facelift_jax.config" in graph["configs.default"]


# The command modules (``python -m facelift_jax.<command>``): the only importers of the command-line layer.
COMMANDS = {f"facelift_jax.{c}" for c in ("train", "preprocess", "evaluate", "export", "predict")}


def test_only_the_commands_import_the_command_line_layer():
    graph, _ = _module_imports(ROOT)
    users = {m for m, deps in graph.items() if any(d == "facelift_jax.cli" or d.startswith("facelift_jax.cli.")
                                                  for d in deps) and not m.startswith("facelift_jax.cli")}
    assert users and users <= COMMANDS, sorted(users - COMMANDS)


def test_the_cycle_finder_finds_a_planted_cycle(tmp_path):
    """The rules above would pass on any tree if the walk missed imports: plant each kind it must see."""
    (tmp_path / "facelift_jax" / "sub").mkdir(parents=True)
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "facelift_jax" / "__init__.py").write_text("")
    (tmp_path / "facelift_jax" / "sub" / "__init__.py").write_text("from . import b\n")
    (tmp_path / "facelift_jax" / "a.py").write_text("def f():\n    from facelift_jax.sub import b\n")
    (tmp_path / "facelift_jax" / "sub" / "b.py").write_text("from .. import c\n")
    (tmp_path / "facelift_jax" / "c.py").write_text("import facelift_jax.a\nfrom facelift_jax.sub.b import _hidden\n")
    (tmp_path / "benchmarks" / "bench_x.py").write_text("import bench_y\n")
    (tmp_path / "benchmarks" / "bench_y.py").write_text("from bench_x import run\n")
    graph, private = _module_imports(tmp_path, ("facelift_jax", "benchmarks"))
    cycles = {tuple(c) for c in _cycles(graph)}
    assert ("facelift_jax.a", "facelift_jax.sub.b", "facelift_jax.c", "facelift_jax.a") in cycles, cycles
    assert ("benchmarks.bench_x", "benchmarks.bench_y", "benchmarks.bench_x") in cycles, cycles
    assert private == [("facelift_jax.c", "facelift_jax.sub.b._hidden")], private
    (tmp_path / "facelift_jax" / "c.py").write_text("import numpy\n")
    (tmp_path / "benchmarks" / "bench_y.py").write_text("import facelift_jax.a\n")
    assert _cycles(_module_imports(tmp_path, ("facelift_jax", "benchmarks"))[0]) == []


def test_random_streams_are_one_table_of_distinct_values():
    from facelift_jax import random_streams as streams

    table = {k: v for k, v in vars(streams).items() if k.isupper()}
    per_stream = {k: v for k, v in table.items() if k not in ("PROCESS_STRIDE", "VIDEO_POPULATION")}
    assert len(set(per_stream.values())) == len(per_stream), per_stream
