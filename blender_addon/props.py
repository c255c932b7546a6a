"""Scene and window-manager properties, and the add-on preferences."""
import bpy
from bpy.props import (BoolProperty, CollectionProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty,
                       StringProperty)

from . import paths
from .rig import ROOT_MOTION

ADDON_ID = __package__


def _is_armature(self, obj):
    return obj.type == "ARMATURE"


# The picker's armature filter (a PointerProperty poll callback) only where it is safe. bpy 4.2 (seen on the 4.2.23
# module): a property group with a Python poll callback, once registered, makes the process segfault at exit
# (bpy_class_free -> PyGILState_Ensure after Python has finalised, from SpaceType's static destructor), even after
# unregister_class; a Panel or an operator alone does not. 4.5.15 and 5.0 exit cleanly; 4.3/4.4 are untested, so
# they go without it too. Without the filter the picker lists every object; ops.target_armature still rejects a
# non-armature target with a one-line error, so only the picker's convenience is lost.
_TARGET_POLL = {"poll": _is_armature} if bpy.app.version >= (4, 5, 0) else {}


class MOTIONMILL_PG_clip(bpy.types.PropertyGroup):
    prompt: StringProperty()
    path: StringProperty(subtype="FILE_PATH")
    seed: IntProperty(default=-1)
    model: StringProperty()
    action: PointerProperty(type=bpy.types.Action)


class MOTIONMILL_PG_settings(bpy.types.PropertyGroup):
    prompt: StringProperty(name="Prompt", description="What the character does")
    prompt_text: PointerProperty(name="Text", type=bpy.types.Text,
                                 description="A text block for long prompts (used when the prompt field is empty); "
                                             "for batch generation, one prompt per line")
    auto_length: BoolProperty(name="Auto", default=True,
                              description="The model decides how long the motion is (up to 10 s), as it was trained; "
                                          "untick to ask for an exact length")
    seconds: FloatProperty(name="Seconds", default=4.0, min=0.5, max=10.0,
                           description="Exact length of each clip when Auto is off (up to 10 s)")
    seed: IntProperty(name="Seed", default=0, min=0)
    variations: IntProperty(name="Variations", default=1, min=1, max=16)
    temperature: FloatProperty(name="Temperature", default=1.0, min=0.0, max=2.0,
                               description="0 = greedy (deterministic)")
    target: PointerProperty(name="Armature", type=bpy.types.Object, **_TARGET_POLL,
                            description="The rig to animate (default: the active armature)")
    root_motion: EnumProperty(name="Root motion", items=[(k, n, d) for k, n, d in ROOT_MOTION], default="hips")
    cleanup_feet: BoolProperty(name="Foot cleanup", default=True, description="Remove foot sliding")
    placement: EnumProperty(name="Place", items=[("INSERT", "Insert at current frame", "New active action"),
                                                  ("NLA", "Push to NLA strip", "New strip on the MotionMill track")],
                            default="INSERT")
    blend_in: FloatProperty(name="Blend in", default=0.0, min=0.0)
    blend_out: FloatProperty(name="Blend out", default=0.0, min=0.0)
    history: CollectionProperty(type=MOTIONMILL_PG_clip)
    history_index: IntProperty()


class MOTIONMILL_PG_runtime(bpy.types.PropertyGroup):
    running: BoolProperty()
    progress: FloatProperty(min=0.0, max=1.0, subtype="FACTOR")
    status: StringProperty()
    doctor_output: StringProperty()  # the last `backend doctor` report, shown in the preferences


def _defaults():
    return paths.default_backend()


class MOTIONMILL_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    backend_python: StringProperty(name="Backend Python", subtype="FILE_PATH", default=_defaults()[0],
                                   description="The Python of MotionMill's virtual environment (filled in by the installer)")
    backend_dir: StringProperty(name="Backend folder", subtype="DIR_PATH", default=_defaults()[1],
                                description="The MotionMill folder holding `backend/`")
    model_dir: StringProperty(name="Model directory", subtype="DIR_PATH", default=_defaults()[2])
    device: EnumProperty(name="Device", items=[("auto", "Auto", ""), ("cuda", "CUDA", ""), ("cpu", "CPU", "")])
    quant: EnumProperty(name="Quantisation", items=[("nf4", "NF4 (4-bit)", ""), ("int8", "int8", ""),
                                                      ("none", "None", "")], default="nf4")
    compile: EnumProperty(name="Compiled decoding", items=[
        ("auto", "Auto", "On a CUDA GPU; on the CPU only where it was measured faster"),
        ("on", "On", "Compile the decoding step when the model loads (first time: a minute or so)"),
        ("off", "Off", "Decode eager")], default="auto")
    idle_minutes: FloatProperty(name="Unload after idle minutes", default=0.0, min=0.0,
                                description="Free the model's memory after this idle time (0: keep loaded)")
    smpl_model_dir: StringProperty(name="SMPL model files", subtype="DIR_PATH",
                                   description="Folder with SMPL_NEUTRAL.npz (optional, for the preview body mesh)")

    def draw(self, context):
        col = self.layout.column()
        for p in ("backend_python", "backend_dir", "model_dir", "device", "quant", "compile", "idle_minutes",
                  "smpl_model_dir"):
            col.prop(self, p)
        col.operator("motionmill.doctor", icon="INFO")
        for line in context.window_manager.motionmill.doctor_output.split("\n")[:30]:
            if line:
                col.label(text=line)


class Prefs:
    """Plain stand-in when the add-on's preferences are not registered (python -m blender_addon.batch)."""
    overrides = {}

    def __init__(self):
        py, root, model = _defaults()
        self.backend_python, self.backend_dir, self.model_dir = py, root, model
        self.device, self.quant, self.idle_minutes, self.smpl_model_dir = "auto", "nf4", 0.0, ""
        self.compile = "auto"
        for k, v in self.overrides.items():
            setattr(self, k, v)


def get_prefs(context=None):
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    if addon is not None and addon.preferences is not None:
        prefs = addon.preferences
        for k, v in Prefs.overrides.items():
            setattr(prefs, k, v)
        return prefs
    return Prefs()


CLASSES = (MOTIONMILL_PG_clip, MOTIONMILL_PG_settings, MOTIONMILL_PG_runtime, MOTIONMILL_AP_preferences)


def register():
    bpy.types.Scene.motionmill = PointerProperty(type=MOTIONMILL_PG_settings)
    bpy.types.WindowManager.motionmill = PointerProperty(type=MOTIONMILL_PG_runtime)


def unregister():
    del bpy.types.WindowManager.motionmill
    del bpy.types.Scene.motionmill
