"""Build the add-on zips: `python -m blender_addon.package --out dist/`

    dist/motionmill-<version>-addon.zip      legacy add-on (Preferences > Add-ons > Install from Disk), folder `motionmill/`
    dist/motionmill-<version>-extension.zip  4.2+ extension (blender_manifest.toml at the root)

Both bundle retarget/ and motionmill_common/ inside the add-on (imported as the sibling packages `.retarget` and
`.motionmill_common`, see _rt.py and _common.py).
Dev tools (bench_keying, package) stay out.
"""
import argparse
import os
import re
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXCLUDE = {"package.py", "bench_keying.py"}
BUNDLED = ("retarget", "motionmill_common")   # numpy / standard library only, imported through _rt.py, _common.py


def _files():
    for name in sorted(os.listdir(HERE)):
        if name.endswith(".py") and name not in EXCLUDE:
            yield os.path.join(HERE, name), name
    for package in BUNDLED:
        src = os.path.join(ROOT, package)
        for dirpath, dirnames, filenames in os.walk(src):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for f in sorted(filenames):
                if f.endswith((".py", ".json", ".toml", ".txt")):
                    full = os.path.join(dirpath, f)
                    yield full, os.path.join(package, os.path.relpath(full, src))


def version():
    text = open(os.path.join(HERE, "blender_manifest.toml")).read()
    return re.search(r'^version\s*=\s*"([^"]+)"', text, re.M).group(1)


def build(out):
    os.makedirs(out, exist_ok=True)
    v = version()
    legacy = os.path.join(out, f"motionmill-{v}-addon.zip")
    ext = os.path.join(out, f"motionmill-{v}-extension.zip")
    with zipfile.ZipFile(legacy, "w", zipfile.ZIP_DEFLATED) as z:
        for full, rel in _files():
            z.write(full, os.path.join("motionmill", rel))
    with zipfile.ZipFile(ext, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(os.path.join(HERE, "blender_manifest.toml"), "blender_manifest.toml")
        for full, rel in _files():
            z.write(full, rel)
    return legacy, ext


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m blender_addon.package")
    p.add_argument("--out", default="dist")
    a = p.parse_args(argv)
    for path in build(a.out):
        print(path)


if __name__ == "__main__":
    main()
