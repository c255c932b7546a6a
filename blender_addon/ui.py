"""The MotionMill sidebar panel and the history list."""
import bpy


class MOTIONMILL_UL_history(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        row = layout.row(align=True)
        row.label(text=item.name, icon="ACTION")
        if item.seed >= 0:
            row.label(text=f"seed {item.seed}")


_RIG_LINES = {}


def _rig_line(obj):
    """The rig report, cached per armature state: the panel redraws often, reading a rig with its mesh does not."""
    key = (obj.name, obj.data.name, len(obj.data.bones), tuple(map(tuple, obj.matrix_world)))
    if key not in _RIG_LINES:
        from .rig import rig_report
        _RIG_LINES.clear()
        _RIG_LINES[key] = rig_report(obj)
    return _RIG_LINES[key]


class MOTIONMILL_PT_panel(bpy.types.Panel):
    bl_idname = "MOTIONMILL_PT_panel"
    bl_label = "MotionMill"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "MotionMill"

    def draw(self, context):
        s = context.scene.motionmill
        rt = context.window_manager.motionmill
        layout = self.layout
        col = layout.column()
        col.prop(s, "prompt", text="")
        col.prop(s, "prompt_text")
        row = col.row(align=True)
        row.prop(s, "auto_length", toggle=True)
        sub = row.row(align=True)
        sub.active = not s.auto_length
        sub.prop(s, "seconds")
        col.prop(s, "seed")
        row = col.row(align=True)
        row.prop(s, "variations")
        row.prop(s, "temperature")
        col.prop(s, "target")
        if s.target is not None and s.target.type == "ARMATURE":
            box = col.box()
            box.label(text="Rig as read", icon="ARMATURE_DATA")
            for part in _rig_line(s.target).split(", "):
                box.label(text=part)
        col.prop(s, "root_motion")
        col.prop(s, "cleanup_feet")
        col.prop(s, "reduce_keys")
        col.prop(s, "placement")
        if s.placement == "NLA":
            row = col.row(align=True)
            row.prop(s, "blend_in")
            row.prop(s, "blend_out")
        row = col.row(align=True)
        row.enabled = not rt.running
        row.operator("motionmill.generate", icon="PLAY")
        row.operator("motionmill.generate_batch", icon="NLA")
        row = col.row(align=True)      # long motions (blender_addon/long.py)
        row.enabled = not rt.running
        row.operator("motionmill.continue_action", icon="TRACKING_FORWARDS")
        row.operator("motionmill.generate_timeline", icon="MARKER_HLT").source = "MARKERS"
        row.operator("motionmill.generate_timeline", text="", icon="TEXT").source = "TEXT"
        if rt.running or rt.status:
            row = col.row(align=True)
            if rt.running:
                if hasattr(row, "progress"):
                    row.progress(factor=rt.progress, text=rt.status)
                else:
                    row.prop(rt, "progress", text=rt.status, slider=True)
                row.operator("motionmill.cancel", text="", icon="CANCEL")
            else:
                row.label(text=rt.status)
        box = layout.box()
        box.label(text="Clips")
        box.template_list("MOTIONMILL_UL_history", "", s, "history", s, "history_index", rows=3)
        row = box.row(align=True)
        row.operator("motionmill.history_apply", icon="ARMATURE_DATA")
        row.operator("motionmill.history_preview", icon="HIDE_OFF")
        row.operator("motionmill.history_delete", icon="TRASH", text="")
        col = layout.column(align=True)
        col.operator("motionmill.import_motion", icon="IMPORT")
        col.operator("motionmill.retarget", icon="MOD_ARMATURE")
        col.operator("motionmill.cleanup_feet", icon="MOD_DYNAMICPAINT")
        col.operator("motionmill.add_smpl_armature", icon="OUTLINER_OB_ARMATURE")
        col.operator("motionmill.restart_backend", icon="FILE_REFRESH")


CLASSES = (MOTIONMILL_UL_history, MOTIONMILL_PT_panel)
