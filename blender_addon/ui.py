"""The MotionMill sidebar: Generate (the main panel), then the Clips, Motion tools and Backend sub-panels, the
rarely used ones closed by default. What each control does to the motion is in its tooltip (props.py)."""
import textwrap

import bpy

from . import control_rig


def _clip_seconds(item, scene):
    if item.action is None:
        return None
    first, last = item.action.frame_range
    return (last - first) / (scene.render.fps / scene.render.fps_base)


class MOTIONMILL_OT_clip_select(bpy.types.Operator):
    """Select this clip"""
    bl_idname = "motionmill.clip_select"
    bl_label = "Select Clip"
    bl_options = {"INTERNAL"}

    index: bpy.props.IntProperty()

    @classmethod
    def description(cls, context, properties):
        """The clip's whole prompt as its row's tooltip (the row shows only its start)."""
        history = context.scene.motionmill.history
        return history[properties.index].prompt if 0 <= properties.index < len(history) else cls.__doc__

    def execute(self, context):
        context.scene.motionmill.history_index = self.index
        return {"FINISHED"}


def clip_facts(item, scene):
    """What the Clips list says of a clip under the list, once selected: "not on a rig" (its retarget failed: Apply to
    Rig once fixed), its length, its seed."""
    facts = ["not on a rig"] if item.pending else []
    seconds = _clip_seconds(item, scene)
    if seconds is not None:
        facts.append(f"{seconds:.1f} s")
    if item.seed >= 0:
        facts.append(f"seed {item.seed}")
    return " · ".join(facts)


class MOTIONMILL_UL_history(bpy.types.UIList):
    """One clip per row: its prompt, the whole row wide (the default sidebar cut it at 14 characters beside its length
    and seed, which are shown under the list); hovering shows all of it (the operator's description). A clip whose
    retarget failed carries a warning icon."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        row = layout.row()
        row.alignment = "LEFT"        # an operator button centres its text; a clip's prompt reads from the left
        row.operator("motionmill.clip_select", text=item.prompt or item.name,
                     icon="ERROR" if item.pending else "ACTION", emboss=False).index = index


_RIG_LINES = {}


def _rig_line(obj, controls):
    """The rig report, cached per armature state: the panel redraws often, reading a rig with its mesh does not."""
    key = (obj.name, obj.data.name, len(obj.data.bones), tuple(map(tuple, obj.matrix_world)), controls)
    if key not in _RIG_LINES:
        from .rig import rig_report
        _RIG_LINES.clear()
        _RIG_LINES[key] = rig_report(obj, controls)
    return _RIG_LINES[key]


def _clip_notes(s):
    """The one-line notes (motionmill_notes) of the clip selected in Clips: a correction made or skipped, and why."""
    if not 0 <= s.history_index < len(s.history) or s.history[s.history_index].action is None:
        return []
    return [n for n in str(s.history[s.history_index].action.get("motionmill_notes", "")).splitlines() if n]


def _wrapped(layout, text, width_px, icon="NONE"):
    """`text` as labels wrapped to the sidebar's width (a label is cut, not wrapped, by Blender)."""
    chars = max(20, int(width_px / 7))
    for i, line in enumerate(textwrap.wrap(text, chars) or [""]):
        layout.label(text=line, icon=icon if i == 0 else "BLANK1" if icon != "NONE" else "NONE")


def _width(context):
    """The sidebar's width in pixels, for wrapping labels (300 where there is no region, as in background mode)."""
    return context.region.width if context.region else 300


def _prompt_source(s):
    """Which prompt Generate uses, in words."""
    if s.prompt.strip():
        return "Generate uses the prompt field"
    if s.prompt_text is not None:
        n = len([ln for ln in s.prompt_text.as_string().splitlines() if ln.strip()])
        return f"Uses the text '{s.prompt_text.name}' ({n} line{'' if n == 1 else 's'}; Batch: one clip a line)"
    return "Type a prompt, or pick a text block"


class _Sidebar:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "MotionMill"


class _SubPanel(_Sidebar):
    """A sub-panel of the MotionMill panel, closed until the animator opens it."""
    bl_parent_id = "MOTIONMILL_PT_panel"
    bl_options = {"DEFAULT_CLOSED"}


class MOTIONMILL_PT_panel(_Sidebar, bpy.types.Panel):
    bl_idname = "MOTIONMILL_PT_panel"
    bl_label = "MotionMill"

    def draw(self, context):
        from .ops import target_armature
        s = context.scene.motionmill
        rt = context.window_manager.motionmill
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        width = _width(context)

        col = layout.column()
        col.label(text="Prompt")
        col.prop(s, "prompt", text="")
        if len(s.prompt) > max(20, width / 8):  # a long prompt is cut in its field: show all of it
            box = col.box()
            _wrapped(box.column(align=True), s.prompt, width - 40)
        col.prop(s, "prompt_text", text="Text")
        _wrapped(col.column(align=True), _prompt_source(s), width - 40, icon="INFO")

        col = layout.column()
        col.prop(s, "auto_length", text="Length auto")
        sub = col.column()
        sub.active = not s.auto_length
        sub.prop(s, "seconds")
        col.prop(s, "seed")
        col.prop(s, "variations")
        col.prop(s, "temperature")

        col = layout.column()
        col.prop(s, "target")
        obj, err = target_armature(context)
        if err:
            _wrapped(col.column(align=True), err, width - 40, icon="ERROR")
        elif s.target is None:
            _wrapped(col.column(align=True), f"Uses the active armature '{obj.name}'", width - 40,
                     icon="ARMATURE_DATA")
        if obj is not None and control_rig.recognise(obj) is not None:
            col.prop(s, "controls")
        col.prop(s, "root_motion")
        col.prop(s, "cleanup_feet")
        col.prop(s, "reduce_keys")
        if s.reduce_keys:
            col.prop(s, "key_detail")
        col.prop(s, "placement")
        if s.placement == "NLA":
            col.prop(s, "blend_in")
            col.prop(s, "blend_out")

        layout.use_property_split = False
        row = layout.row(align=True)
        row.scale_y = 1.4
        row.enabled = not rt.running
        row.operator("motionmill.generate", icon="PLAY")
        row.operator("motionmill.generate_batch", icon="NLA")
        row = layout.row(align=True)      # long motions (blender_addon/long.py)
        row.enabled = not rt.running
        row.operator("motionmill.continue_action", icon="TRACKING_FORWARDS")
        row.operator("motionmill.generate_timeline", icon="MARKER_HLT").source = "MARKERS"
        row.operator("motionmill.generate_timeline", text="", icon="TEXT").source = "TEXT"
        if rt.running:
            row = layout.row(align=True)
            if hasattr(row, "progress"):
                row.progress(factor=rt.progress, text=f"{rt.status}")
            else:
                row.prop(rt, "progress", text=rt.status, slider=True)
            row.operator("motionmill.cancel", text="", icon="CANCEL")
        elif rt.status:
            box = layout.box()
            box.alert = rt.failed
            # the check mark only for a run that finished: never after a failure, a cancel or an unexpected error
            icon = "ERROR" if rt.failed else "CHECKMARK" if rt.done else "INFO"
            _wrapped(box.column(align=True), rt.status, width - 40, icon=icon)
            for note in _clip_notes(s) if rt.done else ():     # what the retarget or foot cleanup changed, and why
                _wrapped(box.column(align=True), note, width - 40, icon="INFO")


class MOTIONMILL_PT_rig(_SubPanel, bpy.types.Panel):
    """What the retarget reads from the target rig: why a rig behaves as it does."""
    bl_idname = "MOTIONMILL_PT_rig"
    bl_order = 1   # the docs' order: Clips, Rig as read, Bone Map, Motion tools, Backend
    bl_label = "Rig as read"

    def draw(self, context):
        from .ops import target_armature
        obj, err = target_armature(context)
        col = self.layout.column(align=True)
        width = _width(context) - 30
        if err:
            _wrapped(col, err, width, icon="ERROR")
            return
        # the lead first (a control rig: how it is keyed; the kind of rig, its height, its feet), then the details
        for chunk in _rig_line(obj, context.scene.motionmill.controls).split("; "):
            for part in chunk.split(", ") if chunk.startswith("up axis") else [chunk]:
                _wrapped(col, part, width)


class MOTIONMILL_PT_clips(_SubPanel, bpy.types.Panel):
    bl_idname = "MOTIONMILL_PT_clips"
    bl_order = 0   # the docs' order: Clips, Rig as read, Bone Map, Motion tools, Backend
    bl_label = "Clips"
    bl_options = set()            # open: the clips just made are what the animator looks for

    def draw(self, context):
        s = context.scene.motionmill
        layout = self.layout
        layout.template_list("MOTIONMILL_UL_history", "", s, "history", s, "history_index", rows=3)
        if 0 <= s.history_index < len(s.history):
            item = s.history[s.history_index]
            col = layout.column(align=True)
            if item.prompt:
                _wrapped(col, item.prompt, _width(context) - 30)
            facts = clip_facts(item, context.scene)
            if facts:
                col.label(text=facts, icon="ERROR" if item.pending else "NONE")
        row = layout.row(align=True)
        row.operator("motionmill.history_apply", icon="ARMATURE_DATA")
        row.operator("motionmill.history_preview", icon="HIDE_OFF")
        row.operator("motionmill.history_delete", icon="TRASH", text="")


class MOTIONMILL_PT_tools(_SubPanel, bpy.types.Panel):
    bl_idname = "MOTIONMILL_PT_tools"
    bl_order = 3   # the docs' order: Clips, Rig as read, Bone Map, Motion tools, Backend
    bl_label = "Motion tools"

    def draw(self, context):
        col = self.layout.column(align=True)
        col.operator("motionmill.import_motion", icon="IMPORT")
        col.operator("motionmill.retarget", icon="MOD_ARMATURE")
        col.operator("motionmill.cleanup_feet", icon="MOD_DYNAMICPAINT")
        col.operator("motionmill.add_smpl_armature", icon="OUTLINER_OB_ARMATURE")


class MOTIONMILL_PT_backend(_SubPanel, bpy.types.Panel):
    bl_idname = "MOTIONMILL_PT_backend"
    bl_order = 4   # the docs' order: Clips, Rig as read, Bone Map, Motion tools, Backend
    bl_label = "Backend"

    def draw(self, context):
        from . import session
        from .doctor_view import doctor_report, doctor_rows
        rt = context.window_manager.motionmill
        col = self.layout.column(align=True)
        alive = session.SESSION.alive
        col.label(text="running (the model stays loaded)" if alive else "not started: Generate starts it",
                  icon="CHECKMARK" if alive else "INFO")
        col.operator("motionmill.restart_backend", icon="FILE_REFRESH")
        row = col.row()
        row.enabled = not rt.doctor_running
        row.operator("motionmill.doctor", icon="INFO", text="Checking…" if rt.doctor_running else "Run Doctor")
        report = doctor_report(rt.doctor_output)
        if report is not None:
            box = self.layout.box()
            width = _width(context) - 40
            for key, value in doctor_rows(report):
                _wrapped(box.column(align=True), f"{key}: {value}", width)


CLASSES = (MOTIONMILL_OT_clip_select, MOTIONMILL_UL_history, MOTIONMILL_PT_panel, MOTIONMILL_PT_clips, MOTIONMILL_PT_rig, MOTIONMILL_PT_tools,
           MOTIONMILL_PT_backend)
