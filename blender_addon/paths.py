"""Where the add-on keeps user data and reads the installer's settings. Never the add-on folder. The settings file
and the user folders are motionmill_common.folders', shared with the backend and the installer."""
import os

from ._common import folders

PACKAGE = __package__ or "blender_addon"


config_path = folders.config_path
load_settings = folders.load_settings


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
        path = folders.data_dir()
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
    """(python, backend_dir, model_dir) from the installer's settings, falling back to a source checkout; the model
    directory as `python -m backend generate` finds it (motionmill_common.folders.default_model_dir)."""
    s = load_settings()
    root = s.get("backend_root") or repo_root() or ""
    py = s.get("backend_python") or ""
    if not py and root:
        for cand in (os.path.join(root, ".venv", "bin", "python"), os.path.join(root, ".venv", "Scripts", "python.exe")):
            if os.path.exists(cand):
                py = cand
                break
    return py, root, folders.default_model_dir()     # as the backend's CLI: the env, the settings, the data folder
