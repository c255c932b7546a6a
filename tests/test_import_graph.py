"""The project's own imports, read with `ast` (every import, module- or function-level, absolute or relative):
no module imports itself back through others, and each folder imports only what DESIGN.md's layout table allows."""
import ast
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("models", "backend", "retarget", "blender_addon", "motionmill_common")


def project_modules():
    """Dotted module name -> source path, for every package module and install.py."""
    mods = {"install": ROOT / "install.py"}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


def _package_of(name, path):
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imported_names(name, path):
    """Every dotted name `name` imports, from the ast of its source: `from pkg import mod` gives pkg.mod, and
    `from mod import attr` mod.attr (the graph keeps the longest prefix that is a module)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(name, path).split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            out += [f"{module}.{a.name}" for a in node.names]
    return out


def import_graph():
    mods = project_modules()
    graph = {}
    for name, path in mods.items():
        edges = set()
        for target in imported_names(name, path):
            # the longest project module that the name is, or is an attribute of
            while target and target not in mods:
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.add(target)
        graph[name] = edges
    return graph


def find_cycle(graph):
    """One import cycle as a list of modules (first == last), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_sees_relative_and_function_level_imports(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import thing\n")
    (pkg / "b.py").write_text("def f():\n    from pkg import a\n")
    mods = {"pkg": pkg / "__init__.py", "pkg.a": pkg / "a.py", "pkg.b": pkg / "b.py"}
    assert "pkg.b.thing" in imported_names("pkg.a", mods["pkg.a"])
    assert "pkg.a" in imported_names("pkg.b", mods["pkg.b"])
    assert find_cycle({"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}}) == ["pkg.a", "pkg.b", "pkg.a"]
    assert find_cycle({"pkg.a": {"pkg.b"}, "pkg.b": set()}) is None


def test_no_import_cycle_among_the_projects_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _third_party(name, path):
    tops = {n.split(".")[0] for n in imported_names(name, path)}
    return {t for t in tops if t not in sys.stdlib_module_names and t not in PACKAGES and t != "install"}


def test_each_folder_imports_only_what_the_layout_allows():
    """DESIGN.md: never retarget -> torch or bpy; backend -> bpy or blender_addon; blender_addon -> torch or backend;
    motionmill_common (shared by both sides) is standard library only."""
    refused = {"motionmill_common": {"torch", "bpy", "numpy", "transformers", "models", "backend", "retarget",
                                     "blender_addon"},
               "retarget": {"torch", "bpy", "backend", "models", "blender_addon", "transformers"},
               "backend": {"bpy", "blender_addon"},
               "blender_addon": {"torch", "transformers", "bitsandbytes", "models", "backend"},
               "models": {"bpy", "blender_addon", "backend"}}
    graph = import_graph()
    for name, path in project_modules().items():
        folder = name.split(".")[0]
        used = _third_party(name, path) | {t.split(".")[0] for t in graph[name]}
        bad = used & refused.get(folder, set())
        assert not bad, f"{name} imports {sorted(bad)}"
