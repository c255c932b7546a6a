"""Motion tools (motionmill.*): import motion files, retarget a clip again, clean up feet, add an SMPL armature, and
files dropped onto the 3D viewport. Thin: the work is in apply, cleanup and smpl_rig."""
import os

import bpy
from bpy.props import CollectionProperty, EnumProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from . import apply, compat, nla
from ._rt import MotionError, SkeletonError
from .ops import _TargetPoll, settings, target_armature
from .props import get_prefs

class MOTIONMILL_OT_import_motion(_TargetPoll, bpy.types.Operator, ImportHelper):
    """Import motion files (interchange .npz, 272-feature .npy, AMASS .npz, BVH) onto the target armature"""
    bl_idname = "motionmill.import_motion"
    bl_label = "Import Motion"
    bl_options = {"REGISTER", "UNDO"}

    filter_glob: StringProperty(default="*.npz;*.npy;*.bvh", options={"HIDDEN"})
    # several files from the file browser, or dropped onto the 3D viewport (MOTIONMILL_FH_motion)
    files: CollectionProperty(type=bpy.types.OperatorFileListElement, options={"HIDDEN", "SKIP_SAVE"})
    directory: StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})
    placement: EnumProperty(name="Place", items=[("PANEL", "As in panel", "The panel's Place setting"),
                                                  ("INSERT", "Insert", "Each file a new active action"),
                                                  ("NLA", "NLA strip", "Strips on the MotionMill track, one after another")],
                            default="PANEL")

    def invoke(self, context, event):
        return compat.invoke_import(self, context)

    def paths(self):
        names = [f.name for f in self.files if f.name]
        if names and self.directory:
            return [os.path.join(bpy.path.abspath(self.directory), n) for n in names]
        return [bpy.path.abspath(self.filepath)]

    def execute(self, context):
        obj, _ = target_armature(context)
        paths = self.paths()
        done, failed = [], []
        for path in paths:
            try:
                done.append(import_file(self, context, obj, path, self.placement))
            except (MotionError, SkeletonError) as err:
                failed.append(f"{os.path.basename(path)}: {str(err).splitlines()[0]}")
        if not done:
            self.report({"ERROR"}, "; ".join(failed))
            return {"CANCELLED"}
        for line in failed:
            self.report({"WARNING"}, f"not imported: {line}")
        names = ", ".join(f"'{a.name}'" for a in done)
        self.report({"INFO"}, f"imported {len(done)} file(s) onto {obj.name} as {names}" if len(paths) > 1 else
                    f"imported {os.path.basename(paths[0])} onto {obj.name} as {names}")
        return {"FINISHED"}


def import_file(op, context, obj, path, placement="PANEL"):
    """One motion file onto `obj`, placed as `placement` says (PANEL: the panel's Place), listed in Clips (a clip
    listed before its retarget failed gets this action); the retarget's notes as warnings on `op`. -> the action."""
    s = settings(context)
    placement = s.placement if placement == "PANEL" else placement
    motion = apply.load_motion(path)
    name = apply.clip_name(path)
    action, strip, anim = apply.apply_motion(context.scene, obj, motion, name, {"motionmill_path": path},
                                             s.root_motion, s.cleanup_feet, placement, None, s.blend_in, s.blend_out)
    if placement == "NLA":  # else the animator's active action would hold its pose over the new strip
        nla.push_down_active_action(obj)
    apply.add_history(context.scene, name, path, action)
    for note in anim.notes:
        op.report({"WARNING"}, note)
    return action


class MOTIONMILL_OT_retarget(_TargetPoll, bpy.types.Operator):
    """Retarget from an SMPL armature's action (or a motion file) onto the target armature"""
    bl_idname = "motionmill.retarget"
    bl_label = "Retarget"
    bl_options = {"REGISTER", "UNDO"}

    source: StringProperty(name="Source armature", description="Object name of the SMPL armature")
    filepath: StringProperty(subtype="FILE_PATH")

    def execute(self, context):
        from . import smpl_rig
        obj, _ = target_armature(context)
        s = settings(context)
        path = bpy.path.abspath(self.filepath) if self.filepath else ""
        try:
            if path:
                motion, name = apply.load_motion(path), apply.clip_name(path)
            else:
                src = bpy.data.objects.get(self.source) if self.source else next(
                    (o for o in context.selected_objects if o.type == "ARMATURE" and o != obj), None)
                if src is None or src.type != "ARMATURE":
                    self.report({"ERROR"}, "no source: select an SMPL armature besides the target, or give a file")
                    return {"CANCELLED"}
                if src == obj:
                    self.report({"ERROR"}, "the source and the target are the same armature")
                    return {"CANCELLED"}
                motion = smpl_rig.motion_from_armature(context.scene, src)
                name = (src.animation_data.action.name if src.animation_data and src.animation_data.action
                        else src.name)
            action, strip, _ = apply.apply_motion(context.scene, obj, motion, name, {}, s.root_motion,
                                                  s.cleanup_feet, s.placement, None, s.blend_in, s.blend_out)
        except (MotionError, SkeletonError, ValueError) as err:
            self.report({"ERROR"}, str(err).splitlines()[0])
            return {"CANCELLED"}
        apply.add_history(context.scene, name, path, action)
        return {"FINISHED"}


class MOTIONMILL_OT_cleanup_feet(_TargetPoll, bpy.types.Operator):
    """Remove foot sliding from the armature's active action (into a new action; the old one is kept)"""
    bl_idname = "motionmill.cleanup_feet"
    bl_label = "Clean Up Feet"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        from . import cleanup
        obj, _ = target_armature(context)
        try:
            action = cleanup.cleanup_active_action(context.scene, obj)
        except (MotionError, SkeletonError, ValueError) as err:
            self.report({"ERROR"}, str(err).splitlines()[0])
            return {"CANCELLED"}
        self.report({"INFO"}, f"foot cleanup written to '{action.name}'")
        return {"FINISHED"}


class MOTIONMILL_OT_add_smpl_armature(bpy.types.Operator):
    """Add a preview SMPL-22 skeleton (with the SMPL body mesh if SMPL model files are set in the preferences)"""
    bl_idname = "motionmill.add_smpl_armature"
    bl_label = "Add SMPL Armature"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        from . import smpl_rig
        obj, mesh_note = smpl_rig.add_smpl_armature(context, get_prefs(context).smpl_model_dir)
        self.report({"INFO"}, f"added '{obj.name}'; {mesh_note}")
        return {"FINISHED"}


class MOTIONMILL_FH_motion(bpy.types.FileHandler):
    """Drop .bvh / .npz / .npy files onto the 3D viewport: Import Motion onto the target armature (Blender 4.1+)."""
    bl_idname = "MOTIONMILL_FH_motion"
    bl_label = "MotionMill motion"
    bl_import_operator = "motionmill.import_motion"
    bl_file_extensions = ".bvh;.npz;.npy"

    @classmethod
    def poll_drop(cls, context):
        return context.area is not None and context.area.type == "VIEW_3D"


CLASSES = (MOTIONMILL_OT_import_motion, MOTIONMILL_OT_retarget, MOTIONMILL_OT_cleanup_feet,
           MOTIONMILL_OT_add_smpl_armature, MOTIONMILL_FH_motion)
