"""The retarget package, bundled inside the add-on zip (blender_addon/retarget) or, in a source checkout, the
repository's top-level `retarget`. numpy only; import it from here everywhere in the add-on."""
import importlib

try:
    _pkg = importlib.import_module(__package__ + ".retarget")
except ImportError:
    _pkg = importlib.import_module("retarget")

_name = _pkg.__name__
formats = importlib.import_module(_name + ".formats")
interchange = importlib.import_module(_name + ".interchange")
mapping = importlib.import_module(_name + ".mapping")
motion = importlib.import_module(_name + ".motion")
skeleton = importlib.import_module(_name + ".skeleton")
transfer = importlib.import_module(_name + ".transfer")
feet = importlib.import_module(_name + ".feet")
smpl = importlib.import_module(_name + ".smpl")
keyreduce = importlib.import_module(_name + ".keyreduce")
inverse = importlib.import_module(_name + ".inverse")
continuation = importlib.import_module(_name + ".continuation")
controls = importlib.import_module(_name + ".controls")
rotations = importlib.import_module(_name + ".rotations")

MotionError = motion.MotionError
SkeletonError = skeleton.SkeletonError
