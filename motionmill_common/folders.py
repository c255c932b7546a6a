"""Where the user's settings and data live, and the default model directory (standard library only: the backend,
the installer and the add-on all read them here).

Settings: $MOTIONMILL_CONFIG, else <config dir>/motionmill/config.json (XDG on Linux, Application Support on
macOS, %APPDATA% on Windows). Data (weights, generated clips, logs): $MOTIONMILL_DATA or <data dir>/motionmill.
"""
import json
import os
import sys


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


def data_dir():
    return os.environ.get("MOTIONMILL_DATA") or os.path.join(_platform_dir("data"), "motionmill")


def load_settings():
    try:
        with open(config_path()) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):      # missing, unreadable, not UTF-8, not JSON
        return {}


def save_settings(**updates):
    settings = {**load_settings(), **updates}
    path = config_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(settings, f, indent=1)
    os.replace(tmp, path)
    return path


def default_model_dir():
    """$MOTIONMILL_MODEL_DIR, else the user's configured model_dir, else <data dir>/models/motionmillion-7b."""
    return (os.environ.get("MOTIONMILL_MODEL_DIR") or load_settings().get("model_dir")
            or os.path.join(data_dir(), "models", "motionmillion-7b"))
