"""Scene and window-manager properties, and the add-on preferences."""
import bpy
from bpy.props import (BoolProperty, CollectionProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty,
                       StringProperty)

from . import paths
from .rig import ROOT_MOTION

ADDON_ID = __package__


def _is_armature(self, obj):
    return obj.type == "ARMATURE"


# The picker's armature filter (a PointerProperty poll callback). The bpy *module* before 4.5 (seen on 4.2.23) segfaults
# at interpreter exit once a property group with a Python poll callback was registered (bpy_class_free ->
# PyGILState_Ensure after Python has finalised), even after unregister_class; 4.5.15 and 5.0 exit cleanly. Blender
# itself (the application, which has a binary_path; the module has none) does not finalise that way: the windowed
# 4.3.2 check runs with the filter and exits 0. So only the old modules (the LTS test runs) go without it, and there
# ops.target_armature still refuses a non-armature with a one-line reason.
_TARGET_POLL = {"poll": _is_armature} if bpy.app.version >= (4, 5, 0) or bpy.app.binary_path else {}


class MOTIONMILL_PG_clip(bpy.types.PropertyGroup):
    prompt: StringProperty(name="Prompt", description="The prompt this clip was generated from")
    path: StringProperty(subtype="FILE_PATH")
    seed: IntProperty(default=-1)
    model: StringProperty()
    action: PointerProperty(type=bpy.types.Action)
    pending: BoolProperty()  # listed before its retarget, which has not succeeded yet: the next apply of path fills it


class MOTIONMILL_PG_settings(bpy.types.PropertyGroup):
    prompt: StringProperty(name="Prompt", description="What the character does, in plain words: \"a zombie shuffles "
                                                      "forward, then lunges\". Used when it is not empty")
    prompt_text: PointerProperty(name="Text", type=bpy.types.Text,
                                 description="A text block for a long prompt (used when the prompt field is empty); "
                                             "for Generate Batch, one prompt per line")
    auto_length: BoolProperty(name="Auto", default=True,
                              description="The model decides how long the motion is (up to 10 s), as it was trained; "
                                          "untick to ask for an exact length")
    seconds: FloatProperty(name="Seconds", default=4.0, min=0.5, max=10.0,
                           description="Exact length of each clip when Auto is off (up to 10 s)")
    seed: IntProperty(name="Seed", default=0, min=0,
                      description="Which take you get: the same prompt, seed and Temperature give the same motion "
                                  "again; another seed gives another take (when Temperature is above 0)")
    variations: IntProperty(name="Variations", default=1, min=1, max=16,
                            description="How many different takes of the prompt to make at once (seeds Seed, Seed+1, "
                                        "…); the first becomes the action, the others NLA strips to choose from")
    temperature: FloatProperty(name="Temperature", default=1.0, min=0.0, max=2.0,
                               description="How freely the model varies the motion: 0 = the same, most typical motion "
                                           "every time; 1 = natural variety; above 1 = wilder, less reliable")
    target: PointerProperty(name="Armature", type=bpy.types.Object, **_TARGET_POLL,
                            description="The rig to animate: any humanoid armature (empty: the active armature)")
    root_motion: EnumProperty(name="Root motion", items=[(k, n, d) for k, n, d in ROOT_MOTION], default="hips",
                              description="Which bone carries the travel through the scene")
    controls: EnumProperty(name="Controls", items=[
        ("ik-legs", "IK legs", "Legs on the IK foot controls (planted feet hold still) with the knee pole, arms FK"),
        ("fk", "FK", "Every limb on its FK controls"),
        ("ik", "IK", "Legs and arms on their IK controls, with knee and elbow poles")], default="ik-legs",
        description="On a control rig (Rigify): which controls the limbs are keyed on")
    cleanup_feet: BoolProperty(name="Foot cleanup", default=True,
                               description="Plant the feet where they touch the ground: no sliding, nothing through "
                                           "the floor")
    reduce_keys: BoolProperty(name="Reduce keys", default=True,
                              description="Key only what the motion needs, as Bezier keys you can edit: every bone "
                                          "stays within 0.5\u00b0 and every location within 1 mm of a key on every "
                                          "frame. Off: a key on every frame (the exact bake)")
    key_detail: EnumProperty(name="Detail", items=[
        ("fine", "Fine", "Within 0.5\u00b0 per bone and 1 mm per location of the bake: the motion as generated, to the eye"),
        ("coarse", "Coarse", "Within 2\u00b0 and 2 cm: fewer keys, near the motion's extremes, easier to edit"),
        ("loose", "Loose", "Within 4\u00b0 and 3 cm: the fewest keys, a blocking pass to refine")], default="fine",
        description="How closely Reduce keys follows the bake: each setting's bound holds at every frame")
    placement: EnumProperty(name="Place", items=[("INSERT", "New action", "A new action from the current frame, made "
                                                  "the rig's active action (the previous one is kept)"),
                                                  ("NLA", "NLA strip", "A new strip on the rig's MotionMill NLA track, "
                                                  "after the strips already there")],
                            default="INSERT", description="Where the new motion goes on the timeline")
    blend_in: FloatProperty(name="Blend in", default=0.0, min=0.0,
                            description="Frames over which a new strip fades in over what is below it")
    blend_out: FloatProperty(name="Blend out", default=0.0, min=0.0,
                             description="Frames over which a new strip fades out")
    history: CollectionProperty(type=MOTIONMILL_PG_clip)
    history_index: IntProperty()


class MOTIONMILL_PG_runtime(bpy.types.PropertyGroup):
    running: BoolProperty()
    progress: FloatProperty(min=0.0, max=1.0, subtype="FACTOR")
    status: StringProperty()
    failed: BoolProperty()  # the status is an error: shown in red until the next run
    done: BoolProperty()    # the status is a finished run's success: the only status shown with a check mark
    doctor_output: StringProperty()  # the last `backend doctor --json` report, shown in the preferences
    doctor_running: BoolProperty()


def _defaults():
    return paths.default_backend()


class MOTIONMILL_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    backend_python: StringProperty(name="Backend Python", subtype="FILE_PATH", default=_defaults()[0],
                                   description="The Python of MotionMill's virtual environment (filled in by the installer)")
    backend_dir: StringProperty(name="Backend folder", subtype="DIR_PATH", default=_defaults()[1],
                                description="The MotionMill folder holding `backend/`")
    model_dir: StringProperty(name="Model directory", subtype="DIR_PATH", default=_defaults()[2],
                              description="The folder holding the MotionMillion model (filled in by the installer)")
    device: EnumProperty(name="Device", items=[("auto", "Auto", "The NVIDIA GPU where there is one, else the CPU"),
                                               ("cuda", "CUDA", "The NVIDIA GPU"), ("cpu", "CPU", "The processor")],
                         description="Where the model runs")
    quant: EnumProperty(name="Quantisation", items=[("nf4", "NF4 (4-bit)", "Least GPU memory (GPU only)"),
                                                      ("int8", "int8", "More GPU memory, closer to full precision "
                                                                       "(GPU only)"),
                                                      ("none", "None", "Full precision")], default="nf4",
                        description="How the model's weights are stored on a GPU; on the CPU they run unquantised")
    compile: EnumProperty(name="Compiled decoding", items=[
        ("auto", "Auto", "On a CUDA GPU; on the CPU only where it was measured faster"),
        ("on", "On", "Compile the decoding step when the model loads (first time: a minute or so)"),
        ("off", "Off", "Decode eager")], default="auto",
        description="Whether the backend compiles its decoding step (faster on a GPU, after a first-time wait)")
    idle_minutes: FloatProperty(name="Unload after idle (minutes)", default=0.0, min=0.0,
                                description="Free the model's memory after this many idle minutes; 0 = never (the "
                                            "model stays loaded for the next prompt)")
    smpl_model_dir: StringProperty(name="SMPL model files", subtype="DIR_PATH",
                                   description="Folder with SMPL_NEUTRAL.npz (optional, for the preview body mesh)")

    def draw(self, context):
        from .doctor_view import doctor_report, doctor_rows
        rt = context.window_manager.motionmill
        report = doctor_report(rt.doctor_output)
        col = self.layout.column()
        for p in ("backend_python", "backend_dir", "model_dir", "device"):
            col.prop(self, p)
        on_gpu = report is None or report["device"]["kind"] == "cuda" and self.device != "cpu"
        row = col.row()
        row.active = on_gpu  # greyed out where it cannot apply: the doctor found no CUDA GPU
        row.prop(self, "quant")
        if not on_gpu:
            col.label(text="No CUDA GPU: the model runs unquantised, in float32, on the CPU", icon="INFO")
        for p in ("compile", "idle_minutes", "smpl_model_dir"):
            col.prop(self, p)
        row = col.row()
        row.enabled = not rt.doctor_running
        row.operator("motionmill.doctor", icon="INFO", text="Checking…" if rt.doctor_running else "Run Doctor")
        if report is not None:
            box = col.box()
            for key, value in doctor_rows(report):
                split = box.split(factor=0.25)
                split.label(text=key)
                split.label(text=value)
        else:
            for line in rt.doctor_output.split("\n")[:12]:  # not a report: the doctor's own error lines
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


class MOTIONMILL_PG_bone_role(bpy.types.PropertyGroup):
    """One role of a rig's bone map: `name` is the role (retarget.mapping.ROLES), `bone` the rig's bone playing it."""
    bone: StringProperty(name="Bone", description="The rig's bone that plays this role (empty: none)")


class MOTIONMILL_PG_bone_map(bpy.types.PropertyGroup):
    """The bone map edited in the panel, stored on the armature (Armature.motionmill_bone_map). While `roles` is
    filled the retarget uses it instead of the auto-map (blender_addon.bonemap, rig.mapping_for)."""
    roles: CollectionProperty(type=MOTIONMILL_PG_bone_role)
    index: IntProperty(name="Role")
    source: StringProperty(description="Where the map came from: the auto-map or a saved preset")


CLASSES = (MOTIONMILL_PG_clip, MOTIONMILL_PG_settings, MOTIONMILL_PG_runtime, MOTIONMILL_AP_preferences,
           MOTIONMILL_PG_bone_role, MOTIONMILL_PG_bone_map)


def register():
    bpy.types.Scene.motionmill = PointerProperty(type=MOTIONMILL_PG_settings)
    bpy.types.WindowManager.motionmill = PointerProperty(type=MOTIONMILL_PG_runtime)
    bpy.types.Armature.motionmill_bone_map = PointerProperty(type=MOTIONMILL_PG_bone_map)


def unregister():
    del bpy.types.Armature.motionmill_bone_map
    del bpy.types.WindowManager.motionmill
    del bpy.types.Scene.motionmill
