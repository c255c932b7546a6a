"""docs/benchmarks.md is shared by several benchmarks: each one rewrites only its own `## ` section."""
import os
import re


def update_section(path, title, body):
    """Replace the `## title` section of markdown file `path` with `body` (added when missing). path None: print the
    section instead; the benchmarks write a tracked file only when asked (--out docs/benchmarks.md)."""
    if path is None:
        print(f"## {title}\n\n{body.strip()}\n")
        return
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n\nFigures measured by the project's benchmark commands.\n"
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text.rstrip() + "\n")
