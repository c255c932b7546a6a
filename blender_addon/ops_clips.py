"""The Clips list's operators (motionmill.history_*): put a clip on the rig again, preview it, take it off the list."""
import os

import bpy
from bpy.props import IntProperty

from ._rt import MotionError, SkeletonError
from .ops import poll_target, settings, target_armature
from .ops_motion import import_file

class _HistoryOp:
    index: IntProperty(default=-1)
    needs_target = False

    @classmethod
    def poll(cls, context):
        if not len(settings(context).history):
            cls.poll_message_set("no clips yet: generate or import one")
            return False
        return poll_target(cls, context) if cls.needs_target else True

    def item(self, context):
        s = settings(context)
        i = self.index if self.index >= 0 else s.history_index
        return s.history[i] if 0 <= i < len(s.history) else None, i


class MOTIONMILL_OT_history_apply(_HistoryOp, bpy.types.Operator):
    """Re-apply the clip to the target armature (a new action)"""
    bl_idname = "motionmill.history_apply"
    bl_label = "Apply to Rig"
    needs_target = True
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        h, _ = self.item(context)
        if h is None or not h.path:
            self.report({"ERROR"}, "no clip file for this history entry")
            return {"CANCELLED"}
        obj, _ = target_armature(context)
        try:
            action = import_file(self, context, obj, h.path)
        except (MotionError, SkeletonError) as err:
            self.report({"ERROR"}, f"{os.path.basename(h.path)}: {str(err).splitlines()[0]}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"'{action.name}' on {obj.name}")
        return {"FINISHED"}


class MOTIONMILL_OT_history_preview(_HistoryOp, bpy.types.Operator):
    """Show the clip's action on the target armature and play it"""
    bl_idname = "motionmill.history_preview"
    bl_label = "Preview"
    needs_target = True
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        from . import compat
        h, _ = self.item(context)
        obj, err = target_armature(context)
        if err or h is None or h.action is None:
            self.report({"ERROR"}, err or ("this clip is not on a rig yet (its retarget failed): use Apply to Rig"
                                           if h is not None and h.pending else "this clip's action no longer exists"))
            return {"CANCELLED"}
        ad = obj.animation_data or obj.animation_data_create()
        if ad.action is not None:
            ad.action.use_fake_user = True
        compat.assign_action(obj, h.action, compat.ensure_slot(h.action, obj))
        lo, hi = h.action.frame_range
        context.scene.frame_current = int(lo)
        if not bpy.app.background and context.screen and not context.screen.is_animation_playing:
            bpy.ops.screen.animation_play()
        return {"FINISHED"}


class MOTIONMILL_OT_history_delete(_HistoryOp, bpy.types.Operator):
    """Remove the clip from the history (its action stays if anything uses it)"""
    bl_idname = "motionmill.history_delete"
    bl_label = "Delete"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        h, i = self.item(context)
        if h is None:
            return {"CANCELLED"}
        s = settings(context)
        s.history.remove(i)
        s.history_index = min(i, len(s.history) - 1)
        return {"FINISHED"}


CLASSES = (MOTIONMILL_OT_history_apply, MOTIONMILL_OT_history_preview, MOTIONMILL_OT_history_delete)
