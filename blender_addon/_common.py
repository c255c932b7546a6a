"""The motionmill_common package, bundled inside the add-on zip (blender_addon/motionmill_common) or, in a source
checkout, the repository's top-level `motionmill_common`. Standard library only; import it from here in the add-on."""
import importlib

try:
    _pkg = importlib.import_module(__package__ + ".motionmill_common")
except ImportError:
    _pkg = importlib.import_module("motionmill_common")

folders = importlib.import_module(_pkg.__name__ + ".folders")
client = importlib.import_module(_pkg.__name__ + ".client")
