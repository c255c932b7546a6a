"""Where the add-on keeps user data and reads the installer's settings (stdlib; mirrors backend.user_config,
which the add-on must not import). Never the add-on folder."""
import json
import os
import sys

PACKAGE = __package__ or "blender_addon"


def _platform_dir(kind):
    home = os.path.expanduser("~")
    if sys.platform == "win32":
        return os.environ.get("APPDATA", os.path.join(home, "AppData", "Roaming"))
    if sys.platform == "darwin":
        return os.path.join(home, "Library", "Application Support")
    if kind == "config":
        return os.environ.get("XDG_CONFIG_HOME", os.path.join(home, ".config"))
    return os.environ.get("XDG_DATA_HOME", os.path.join(home, ".local", "share"))


def config_path():
    return os.environ.get("MOTIONMILL_CONFIG") or os.path.join(_platform_dir("config"), "motionmill", "config.json")


def load_settings():
    try:
        with open(config_path()) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def is_extension():
    return PACKAGE.startswith("bl_ext.")


def data_dir(create=True):
    """bpy.utils.extension_path_user(...) for an extension, else $MOTIONMILL_DATA or <data dir>/motionmill."""
    path = None
    if is_extension():
        try:
            import bpy
            path = bpy.utils.extension_path_user(PACKAGE, create=create)
        except (ImportError, AttributeError, ValueError):
            path = None
    if not path:
        path = os.environ.get("MOTIONMILL_DATA") or os.path.join(_platform_dir("data"), "motionmill")
    if create:
        os.makedirs(path, exist_ok=True)
    return path


def clips_dir(create=True):
    path = os.path.join(data_dir(create), "clips")
    if create:
        os.makedirs(path, exist_ok=True)
    return path


def repo_root():
    """The source checkout this add-on runs from, when it does (python -m blender_addon ...), else None."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return here if os.path.isdir(os.path.join(here, "backend")) else None


def default_backend():
    """(python, backend_dir, model_dir) from the installer's settings, falling back to a source checkout."""
    s = load_settings()
    root = s.get("backend_root") or repo_root() or ""
    py = s.get("backend_python") or ""
    if not py and root:
        for cand in (os.path.join(root, ".venv", "bin", "python"), os.path.join(root, ".venv", "Scripts", "python.exe")):
            if os.path.exists(cand):
                py = cand
                break
    model = os.environ.get("MOTIONMILL_MODEL_DIR") or s.get("model_dir") or ""
    return py, root, model
