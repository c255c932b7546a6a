"""Docs as tests: every shell block in README.md, docs/*.md and examples/README.md runs here, one test per block (id
FILE:LINE, the line of its opening fence), as a user would run it from the repository root of a fresh clone.

Each block runs from a fresh temporary folder holding a copy of the repository's files (what `git ls-files` lists,
tracked and new, that exists in the working tree: a deleted demo file is missing there too), under
`bash -e -o pipefail`, with:
- a `.venv` of the copy's own that reads the project venv's libraries (torch, bpy, ...): what a command installs or
  links into `.venv` stays in the copy;
- `.venv/bin` first on PATH (so `python` and `python3.11` are .venv's, which has bpy), as an activated venv has it;
- a fresh HOME (settings, clips folder, install record: none of the developer's own);
- MOTIONMILL_MODEL_DIR at the tiny conformance model (../shared/conformance/motionmillion-tiny/model), standing in
  for the real weights the way a user picks a model folder: the product's own default-model variable;
- CUDA_VISIBLE_DEVICES="" so that the tiny model runs on the CPU wherever the tests run.
It must exit 0, print no traceback, and leave every file of the repository copy as it was (a command that writes
over a shipped file, such as a `--preview docs/images/...gif`, fails).

The marks a doc can put on the line right before a fence (README, "Set up and test"):
- `<!-- docs-test: skip: needs gpu|gui|network|weights, why -->`: never run (it would take a GPU, Blender's window,
  the network or the real release files); the test is skipped with the doc's reason.
- `<!-- docs-test: fails: TEXT -->`: run as above; it must exit non-zero and print TEXT in one line, with no traceback.
"""
import dataclasses
import functools
import os
import pathlib
import re
import shutil
import subprocess

import pytest

from conftest import BACKEND_PYTHON, CONFORMANCE, ROOT

DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md")) + [ROOT / "examples" / "README.md"]
SHELLS = {"bash", "sh", "shell", "console"}
NEEDS = ("gpu", "gui", "network", "weights")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<lang>[^\s`]*)[^`]*$")
MARK = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<kind>[a-z-]+):\s*(?P<what>.*?)\s*-->\s*$")
TIMEOUT_S = 600


@dataclasses.dataclass
class Block:
    doc: pathlib.Path
    line: int                 # 1-based line of the opening fence
    lang: str
    text: str                 # the block's content, the fence's indentation removed
    mark: "re.Match | None"   # the docs-test comment on the line before, if any

    @property
    def id(self):
        return f"{self.doc.relative_to(ROOT)}:{self.line}"

    @property
    def shell(self):
        return self.lang in SHELLS

    def script(self):
        """The commands: the whole block, or in a console block the `$ ` lines and their continuations."""
        if self.lang != "console":
            return self.text
        out, going_on = [], False
        for line in self.text.splitlines():
            if line.startswith("$ ") or going_on:
                out.append(line[2:] if line.startswith("$ ") and not going_on else line)
                going_on = line.rstrip().endswith("\\")
        return "\n".join(out) + "\n"


def fences(doc):
    """(opening line index, match, closing line index) of every fenced block in a Markdown file."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        char, n = m["fence"][0], len(m["fence"])
        j = i + 1
        while j < len(lines) and not re.fullmatch(rf"[ \t]*{re.escape(char)}{{{n},}}[ \t]*", lines[j]):
            j += 1
        yield lines, i, m, j
        i = j + 1


def blocks(doc):
    for lines, i, m, j in fences(doc):
        indent = m["indent"]
        body = [ln[len(indent):] if ln.startswith(indent) else ln.lstrip() for ln in lines[i + 1:j]]
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        yield Block(doc, i + 1, m["lang"].lower(), "\n".join(body) + "\n",
                    MARK.match(lines[k]) if k >= 0 else None)


ALL = [b for d in DOCS for b in blocks(d)]
SHELL_BLOCKS = [b for b in ALL if b.shell]


# ------------------------------------------------------------------------------------------ the fresh folder

def repo_files():
    """The repository's files as a fresh clone would have them, plus the new ones not yet committed (not ignored)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, check=True).stdout.decode()
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"not a git checkout, the files to copy are unknown: {err}")
    return sorted(p for p in set(out.split("\0")) if p and (ROOT / p).is_file() and not (ROOT / p).is_symlink())


@functools.lru_cache(maxsize=None)
def _venv_libraries():
    """The project venv's site-packages (the Python the backend tests run with, BACKEND_PYTHON)."""
    venv = pathlib.Path(BACKEND_PYTHON).parent.parent
    if not (venv / "pyvenv.cfg").is_file():
        pytest.skip(f"no virtual environment to give the copy's .venv its libraries ({BACKEND_PYTHON} is not in one)")
    out = subprocess.run([BACKEND_PYTHON, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def make_venv(repo):
    """repo/.venv: a virtual environment of the copy's own whose site-packages read the project venv's (a plain path
    line, so the project venv's own motionmill.pth, naming the real checkout, is not read), with the copy linked in as
    install.py links a checkout. A command that installs or links into `.venv` changes the copy's, never the project's."""
    venv = repo / ".venv"
    subprocess.run([BACKEND_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c",
                              "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (pathlib.Path(purelib) / "motionmill.pth").write_text(f"{repo}\n")
    (pathlib.Path(purelib) / "zz-project-venv.pth").write_text(f"{_venv_libraries()}\n")


def fresh_copy(dest, files, leave_out=()):
    for rel in files:
        if rel not in leave_out:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    make_venv(dest)
    return {rel: _stamp(dest / rel) for rel in files if rel not in leave_out}


def _stamp(path):
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def run_block(block, tmp_path, leave_out=()):
    """Run `block` from a fresh copy of the repository -> (exit status, output, files it changed or removed)."""
    model = CONFORMANCE / "model"
    if not model.is_dir():
        pytest.skip(f"shared test data missing: {model} (the tiny model that stands in for the real one)")
    repo, home = tmp_path / "repo", tmp_path / "home"
    home.mkdir()
    stamps = fresh_copy(repo, repo_files(), leave_out)
    script = tmp_path / "block.sh"
    script.write_text(block.script(), encoding="utf-8")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MOTIONMILL_", "PYTHON", "VIRTUAL_ENV", "XDG_", "CUDA_", "PYTEST_"))}
    env.update(HOME=str(home), MOTIONMILL_MODEL_DIR=str(model), CUDA_VISIBLE_DEVICES="",
               VIRTUAL_ENV=str(repo / ".venv"), PATH=f"{repo / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}")
    try:
        r = subprocess.run(["bash", "-e", "-o", "pipefail", str(script)], cwd=repo, env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"{block.id} ran past {TIMEOUT_S} s; its output ended:\n{(err.output or b'')[-3000:]!r}")
    changed = sorted(rel for rel, st in stamps.items() if not (repo / rel).is_file() or _stamp(repo / rel) != st)
    return r.returncode, r.stdout, changed


def _tail(out, n=40):
    return "\n".join(out.replace("\r", "\n").splitlines()[-n:])


# ------------------------------------------------------------------------------------------ one test per block

@pytest.mark.slow
@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=[b.id for b in SHELL_BLOCKS])
def test_doc_block(block, tmp_path):
    kind, what = (block.mark["kind"], block.mark["what"]) if block.mark else (None, None)
    if kind == "skip":
        assert re.match(rf"needs ({'|'.join(NEEDS)})\b", what), \
            f"{block.id}: a skipped block says what it needs ({', '.join(NEEDS)}): 'skip: needs network, ...'"
        pytest.skip(f"{block.id}: {what}")
    assert kind in (None, "fails"), f"{block.id}: unknown docs-test mark {kind!r} (skip or fails)"
    rc, out, changed = run_block(block, tmp_path)
    assert "Traceback (most recent call last)" not in out, f"{block.id} printed a traceback:\n{_tail(out)}"
    assert not changed, f"{block.id} wrote over files that ship with the repository: {changed}"
    if kind == "fails":
        assert rc != 0, f"{block.id} is marked to fail with {what!r}, but it exited 0:\n{_tail(out)}"
        assert any(what in line for line in out.splitlines()), \
            f"{block.id} failed (exit {rc}) without the line {what!r}:\n{_tail(out)}"
    else:
        assert rc == 0, f"{block.id} exited {rc}:\n{_tail(out)}"


# ------------------------------------------------------------------------------------------ what the blocks need

def _demo_files():
    return sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "examples").iterdir()
                  if p.is_file() and p.suffix not in (".py", ".md"))


def commands(block):
    """The block's commands, each with its continuation lines joined."""
    return [c.strip() for c in re.sub(r"\\\n", " ", block.script()).splitlines() if c.strip()]


def _uses(block, rel):
    """The index of the block's first command naming `rel`, and whether that command loads the backend (slower to
    reach its file check than the Blender batch), else None."""
    for i, c in enumerate(commands(block)):
        if re.search(rf"(?<![\w/.]){re.escape(rel)}(?![\w/])", c):
            return i, "-m backend" in c
    return None


@pytest.mark.slow
@pytest.mark.parametrize("rel", _demo_files())
def test_a_block_fails_without_the_demo_file_it_uses(rel, tmp_path):
    """The demo files ship because the docs' commands need them: without one, a block that uses it fails, naming it."""
    users = [(use, n, b) for n, b in enumerate(SHELL_BLOCKS) if b.mark is None and (use := _uses(b, rel))]
    assert users, f"{rel} ships in examples/ but no shell block in the docs uses it"
    block = min(users)[-1]       # the one that reaches it soonest: its first command, a Blender batch before a backend
    rc, out, _ = run_block(block, tmp_path, leave_out={rel})
    assert rc != 0, f"{block.id} still exited 0 without {rel}:\n{_tail(out)}"
    assert any(rel in line and "Traceback" not in line for line in out.splitlines()), \
        f"{block.id} failed without {rel} but did not name it:\n{_tail(out)}"


def test_the_parser_reads_fences_marks_and_console_prompts(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("""intro

<!-- docs-test: skip: needs gpu, a CUDA device -->
```bash
nvidia-smi
```

1. a step:
   ```sh
   echo one \\
       two
   ```
~~~console
$ echo three
three
$ echo four \\
  five
~~~

````text
```bash
not a block of its own
```
````
""", encoding="utf-8")
    got = list(blocks(doc))
    assert [(b.line, b.lang) for b in got] == [(4, "bash"), (9, "sh"), (13, "console"), (20, "text")]
    assert got[0].mark["kind"] == "skip" and got[0].mark["what"] == "needs gpu, a CUDA device"
    assert [b.mark for b in got[1:]] == [None, None, None]
    assert got[1].text == "echo one \\\n    two\n" and commands(got[1]) == ["echo one      two"]
    assert got[2].script() == "echo three\necho four \\\n  five\n"
    assert got[3].text == "```bash\nnot a block of its own\n```\n"


def test_the_runner_reports_the_exit_status_and_a_shipped_file_written_over(tmp_path):
    """What makes a block fail here can happen: a command that writes over a file of the repository (as a
    `--preview docs/images/....gif` would) and a failing command stopping the block (bash -e)."""
    block = Block(ROOT / "README.md", 0, "bash", "echo changed > README.md\nexit 3\necho not reached\n", None)
    rc, out, changed = run_block(block, tmp_path)
    assert (rc, out, changed) == (3, "", ["README.md"])
    assert (ROOT / "README.md").read_text(encoding="utf-8") != "changed\n"


def test_docs_have_shell_blocks_and_the_demo_files():
    """The runner finds what it runs (a parser that found nothing would pass everything)."""
    assert len(SHELL_BLOCKS) >= 10 and any(b.mark is None for b in SHELL_BLOCKS)
    assert {"examples/character.blend", "examples/markers.blend", "examples/walk.bvh",
            "examples/walk.npz"} <= set(_demo_files())


def test_every_fence_names_its_language():
    """A shell block without a language would never run here: every fenced block says what it holds."""
    bare = [b.id for b in ALL if not b.lang]
    assert not bare, f"fenced blocks without a language (```bash, ```text, ...): {bare}"


def test_docs_test_marks_sit_right_before_a_shell_block():
    marked = {(b.doc, b.line) for b in SHELL_BLOCKS if b.mark}
    stray = []
    for doc in DOCS:
        lines = doc.read_text(encoding="utf-8").splitlines()
        for k, line in enumerate(lines):
            if re.match(r"\s*<!--\s*docs-test", line):
                j = k + 1
                while j < len(lines) and not lines[j].strip():
                    j += 1
                if not MARK.match(line) or (doc, j + 1) not in marked:
                    stray.append(f"{doc.relative_to(ROOT)}:{k + 1}")
    assert not stray, f"docs-test marks that are not '<!-- docs-test: KIND: ... -->' right before a shell block: {stray}"


def test_every_examples_path_in_the_docs_exists():
    """Inline commands too: every examples/... path the docs name ships with the repository."""
    missing = sorted({f"{doc.relative_to(ROOT)}: {p}" for doc in DOCS
                      for p in re.findall(r"(?<![\w/.])examples/[\w./-]*\w", doc.read_text(encoding="utf-8"))
                      if not (ROOT / p).exists()})
    assert not missing, f"paths the docs name that do not ship: {missing}"


def test_shell_blocks_stay_inside_the_checkout():
    """A user's clone has no ../shared (the tests' data beside the checkout): the docs' commands must not need it."""
    outside = [b.id for b in SHELL_BLOCKS if b.mark is None and re.search(r"(\.\./)+shared\b", b.script())]
    assert not outside, f"shell blocks that reach outside the repository: {outside}"
