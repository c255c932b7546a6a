"""retarget/ runs inside Blender's Python: numpy and the standard library only."""
import ast
import pathlib
import sys

RETARGET = pathlib.Path(__file__).resolve().parents[1] / "retarget"


def test_retarget_imports_numpy_and_stdlib_only():
    for source in sorted(RETARGET.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [] if node.level else [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top == "numpy" or top in sys.stdlib_module_names, f"{source.name} imports {name}"
