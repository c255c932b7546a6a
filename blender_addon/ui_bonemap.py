"""The Bone Map sub-panel: the target rig's bone map as a list of roles, each a search over the rig's bones,
with "use the active bone", left/right mirroring and saved presets. Operators are thin over blender_addon.bonemap;
each says why it is disabled through poll_message_set."""
import bpy
from bpy.props import EnumProperty, StringProperty

from . import bonemap, control_rig, rig
from ._rt import SkeletonError, mapping as mapping_mod
from .ops import target_armature
from .ui import _SubPanel


def _stored(obj):
    return obj.data.motionmill_bone_map


def _roles(stored):
    return {e.name: e.bone for e in stored.roles if e.bone}


def _fill(stored, roles, source):
    """Replace the stored map by `roles`, one entry per role in retarget's order (root first)."""
    stored.roles.clear()
    for r in mapping_mod.ROLES:
        e = stored.roles.add()
        e.name = r
        e.bone = roles.get(r, "")
    stored.index = min(stored.index, len(stored.roles) - 1)
    stored.source = source


def _active_bone(context, obj):
    """The rig's active bone: the one clicked last in Pose or Edit mode (or set as active in the Outliner)."""
    if context.active_object == obj:
        bone = getattr(context, "active_bone", None) or getattr(context, "active_pose_bone", None)
        if bone is not None:
            return bone.name
    active = obj.data.bones.active
    return active.name if active is not None else None


class _BoneMapPoll:
    """poll helpers: the target armature, and its stored map, or say why not."""
    needs_map = False

    @classmethod
    def poll(cls, context):
        return cls.poll_target(context) is not None

    @classmethod
    def poll_target(cls, context):
        obj, err = target_armature(context)
        if err:
            cls.poll_message_set(err)
            return None
        if cls.needs_map and not len(_stored(obj).roles):
            cls.poll_message_set("the rig has no edited bone map: press Edit Bone Map first")
            return None
        return obj


class MOTIONMILL_OT_bone_map_edit(_BoneMapPoll, bpy.types.Operator):
    """Show the target rig's bone map for editing, starting from what the auto-map found (the retarget then uses
    the edited map)"""
    bl_idname = "motionmill.bone_map_edit"
    bl_label = "Edit Bone Map"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        obj, _ = target_armature(context)
        auto = bonemap.auto_map(rig.skeleton_from_object(obj))
        _fill(_stored(obj), auto.roles, f"auto-map ({auto.report.get('preset') or 'rig structure'})")
        missing = auto.report.get("missing_required", [])
        if missing:
            self.report({"WARNING"}, f"{len(missing)} required role(s) to map by hand: {', '.join(missing)}")
        return {"FINISHED"}


class MOTIONMILL_OT_bone_map_clear(_BoneMapPoll, bpy.types.Operator):
    """Forget the edited bone map of the target rig: the retarget goes back to the auto-map"""
    bl_idname = "motionmill.bone_map_clear"
    bl_label = "Back to Auto-Map"
    bl_options = {"REGISTER", "UNDO"}
    needs_map = True

    def execute(self, context):
        obj, _ = target_armature(context)
        stored = _stored(obj)
        stored.roles.clear()
        stored.source = ""
        return {"FINISHED"}


class MOTIONMILL_OT_bone_map_use_active(_BoneMapPoll, bpy.types.Operator):
    """Map the role to the rig's active bone (click the bone in Pose or Edit mode first)"""
    bl_idname = "motionmill.bone_map_use_active"
    bl_label = "Use Active Bone"
    bl_options = {"REGISTER", "UNDO"}
    needs_map = True

    role: StringProperty(name="Role", description="The role to map (default: the role selected in the list)")

    @classmethod
    def poll(cls, context):
        obj = cls.poll_target(context)
        if obj is None:
            return False
        if _active_bone(context, obj) is None:
            cls.poll_message_set(f"'{obj.name}' has no active bone: click the bone in Pose or Edit mode")
            return False
        return True

    def execute(self, context):
        obj, _ = target_armature(context)
        stored = _stored(obj)
        role = self.role or stored.roles[stored.index].name
        entry = stored.roles.get(role)
        if entry is None:
            self.report({"ERROR"}, f"unknown role {role!r}; roles are {', '.join(mapping_mod.ROLES)}")
            return {"CANCELLED"}
        entry.bone = _active_bone(context, obj)
        stored.index = list(stored.roles).index(entry)
        return {"FINISHED"}


NO_BONE = "__none__"
_BONE_ITEMS = {}     # Blender keeps no reference to an enum's dynamic items: they must outlive the call


def _bone_items(self, context):
    obj, _ = target_armature(context)
    names = [b.name for b in obj.data.bones] if obj is not None else []
    key = tuple(names)
    if key not in _BONE_ITEMS:
        _BONE_ITEMS.clear()
        _BONE_ITEMS[key] = [(NO_BONE, "(no bone)", "Leave the role empty")] + [(n, n, "") for n in names]
    return _BONE_ITEMS[key]


class MOTIONMILL_OT_bone_map_pick(_BoneMapPoll, bpy.types.Operator):
    """Pick the bone that plays this role, from the rig's bones"""
    bl_idname = "motionmill.bone_map_pick"
    bl_label = "Pick Bone"
    bl_options = {"REGISTER", "UNDO"}
    bl_property = "bone"
    needs_map = True

    role: StringProperty(name="Role", options={"HIDDEN"})
    bone: EnumProperty(name="Bone", items=_bone_items)

    @classmethod
    def description(cls, context, properties):
        """The role and its whole bone name: the list's row shows the bone without the rig's shared prefix."""
        obj, _ = target_armature(context)
        entry = _stored(obj).roles.get(properties.role) if obj is not None else None
        bone = entry.bone if entry is not None and entry.bone else "no bone"
        return f"{bonemap.label(properties.role)}: {bone}. Click to pick another bone"

    def invoke(self, context, event):
        context.window_manager.invoke_search_popup(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        obj, _ = target_armature(context)
        stored = _stored(obj)
        entry = stored.roles.get(self.role)
        if entry is None:
            self.report({"ERROR"}, f"unknown role {self.role!r}; roles are {', '.join(mapping_mod.ROLES)}")
            return {"CANCELLED"}
        entry.bone = "" if self.bone == NO_BONE else self.bone
        stored.index = list(stored.roles).index(entry)
        return {"FINISHED"}


class MOTIONMILL_OT_bone_map_mirror(_BoneMapPoll, bpy.types.Operator):
    """Map the other side's roles to the mirrored bone names (.L/.R, _l/_r, Left/Right, as Blender flips names)"""
    bl_idname = "motionmill.bone_map_mirror"
    bl_label = "Mirror"
    bl_options = {"REGISTER", "UNDO"}
    needs_map = True

    source: EnumProperty(name="From", items=[("left", "Left to Right", "Copy the left side's roles to the right side"),
                                             ("right", "Right to Left", "Copy the right side's roles to the left side")])

    def execute(self, context):
        obj, _ = target_armature(context)
        stored = _stored(obj)
        roles, unmatched = bonemap.mirror_roles(_roles(stored), obj.data.bones.keys(), bpy.utils.flip_name,
                                                self.source)
        for e in stored.roles:
            e.bone = roles.get(e.name, "")
        if unmatched:
            self.report({"WARNING"}, "no mirrored bone for: " + ", ".join(
                f"{r} ({_roles(stored)[r]})" for r in unmatched))
        return {"FINISHED"}


class MOTIONMILL_OT_bone_map_save_preset(_BoneMapPoll, bpy.types.Operator):
    """Save the target rig's bone map as a named preset: any rig with the same bone names is then mapped by it,
    by the auto-map, with no hand work"""
    bl_idname = "motionmill.bone_map_save_preset"
    bl_label = "Save Bone-Map Preset"

    name: StringProperty(name="Name", description="The preset's name (saving under an existing name replaces it)")

    @classmethod
    def poll(cls, context):
        obj = cls.poll_target(context)
        if obj is None:
            return False
        stored = _stored(obj)
        if len(stored.roles):
            st = _status(obj.data)
            if not bonemap.is_usable(st):
                cls.poll_message_set("the bone map is incomplete: " + _problem_line(st))
                return False
        return True

    def invoke(self, context, event):
        obj, _ = target_armature(context)
        if not self.name:
            self.name = obj.name
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context):
        obj, _ = target_armature(context)
        skel = rig.skeleton_from_object(obj)
        try:
            mapping = rig.mapping_for(obj, skel).validate(skel)
            path = bonemap.save_preset(self.name or obj.name, mapping, obj.name)
        except (SkeletonError, ValueError, OSError) as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        _stored(obj).source = f"preset '{self.name or obj.name}'" if len(_stored(obj).roles) else ""
        self.report({"INFO"}, f"bone map saved to {path}")
        return {"FINISHED"}


class MOTIONMILL_OT_bone_map_load_preset(_BoneMapPoll, bpy.types.Operator):
    """Map the target rig with a saved bone-map preset (roles whose bone the rig lacks stay empty)"""
    bl_idname = "motionmill.bone_map_load_preset"
    bl_label = "Load Bone-Map Preset"
    bl_options = {"REGISTER", "UNDO"}

    name: StringProperty(name="Name")

    def execute(self, context):
        obj, _ = target_armature(context)
        try:
            preset = bonemap.load_preset(self.name)
        except ValueError as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        roles = bonemap.roles_from_preset(preset, obj.data.bones.keys())
        _fill(_stored(obj), roles, f"preset '{self.name}'")
        lacking = [r for r in preset.get("roles", {}) if r not in roles]
        if lacking:
            self.report({"WARNING"}, f"the rig has no bone for {len(lacking)} role(s) of '{self.name}': "
                                     + ", ".join(lacking))
        return {"FINISHED"}


class MOTIONMILL_OT_bone_map_delete_preset(bpy.types.Operator):
    """Delete a saved bone-map preset"""
    bl_idname = "motionmill.bone_map_delete_preset"
    bl_label = "Delete Bone-Map Preset"

    name: StringProperty(name="Name")

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event)

    def execute(self, context):
        try:
            bonemap.delete_preset(self.name)
        except (ValueError, OSError) as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        return {"FINISHED"}


class MOTIONMILL_MT_bone_map_presets(bpy.types.Menu):
    bl_label = "Bone-Map Presets"

    def draw(self, context):
        layout = self.layout
        presets = bonemap.list_presets()
        if not presets:
            layout.label(text="No saved presets yet")
        for name, path in presets:
            row = layout.row(align=True)
            row.operator("motionmill.bone_map_load_preset", text=name).name = name
            row.operator("motionmill.bone_map_delete_preset", text="", icon="X").name = name


_STATUS = {}


def _status(arm):
    """bonemap.status of armature data `arm`'s stored map, cached on its content: the list draws it once per row."""
    stored = arm.motionmill_bone_map
    key = (arm.name, len(arm.bones), tuple((e.name, e.bone) for e in stored.roles))
    if key not in _STATUS:
        _STATUS.clear()
        roles = _roles(stored)
        obj = next((o for o in bpy.data.objects if o.data == arm), None)
        required = (mapping_mod.REQUIRED_ROLES if obj is None
                    else mapping_mod.required_roles(rig.skeleton_from_object(obj), roles))
        _STATUS[key] = bonemap.status(roles, arm.bones.keys(), required)
    return _STATUS[key]


_AUTO = {}


def _auto_summary(obj):
    """(preset or None, mapped roles, missing required) of the auto-map, cached per rig state and saved presets."""
    key = (obj.name, obj.data.name, len(obj.data.bones), tuple(map(tuple, obj.matrix_world)),
           bonemap.presets_stamp())
    if key not in _AUTO:
        _AUTO.clear()
        m = bonemap.auto_map(rig.skeleton_from_object(obj))
        _AUTO[key] = (m.report.get("preset"), len(m.roles), list(m.report.get("missing_required", [])))
    return _AUTO[key]


_CONTROLS = {}


def _controls_by_role(obj, ctl, roles, mode):
    """[(role, controls)] in retarget's role order, cached per map and mode: the panel redraws often."""
    key = (obj.name, len(obj.data.bones), tuple(sorted(roles.items())), mode)
    if key not in _CONTROLS:
        _CONTROLS.clear()
        found = ctl.controls_by_role(roles, mode)
        _CONTROLS[key] = [(r, found[r]) for r in mapping_mod.ROLES if r in found]
    return _CONTROLS[key]


def _problem_line(st):
    parts = []
    if st["missing_required"]:
        parts.append("missing " + ", ".join(bonemap.label(r) for r in st["missing_required"]))
    for b, rs in st["duplicates"].items():
        parts.append(f"'{b}' plays {' and '.join(bonemap.label(r) for r in rs)}")
    for r, b in st["unknown"].items():
        parts.append(f"{bonemap.label(r)}: no bone '{b}'")
    return "; ".join(parts)


def row_texts(arm, role, bone):
    """(role text, bone text) as a Bone Map row shows them: the short role name, and the bone without the prefix all
    of the map's bones share ("mixamorig:"), so that the default sidebar width keeps the part that tells them apart.
    Both whole in the bone button's tooltip."""
    prefix = bonemap.shared_prefix(_roles(arm.motionmill_bone_map).values())
    return bonemap.label(role, short=True), (bone[len(prefix):] if bone.startswith(prefix) else bone) or "—"


class MOTIONMILL_UL_bone_map(bpy.types.UIList):
    """One role per row: its short name (red when a required role is empty or the bone is wrong), the bone as a button
    that opens a search over the rig's bones, and "use the active bone"."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        st = _status(item.id_data)
        bad = (item.name in st["missing_required"] or item.name in st["unknown"]
               or any(item.name in rs for rs in st["duplicates"].values()))
        role, bone = row_texts(item.id_data, item.name, item.bone)
        row = layout.row(align=True)
        split = row.split(factor=0.36, align=True)
        cell = split.row(align=True)
        cell.alert = bad
        cell.label(text=role, icon="ERROR" if bad else "NONE")
        split.operator("motionmill.bone_map_pick", text=bone).role = item.name
        row.operator("motionmill.bone_map_use_active", text="", icon="EYEDROPPER").role = item.name


class MOTIONMILL_PT_bone_map(_SubPanel, bpy.types.Panel):
    bl_idname = "MOTIONMILL_PT_bone_map"
    bl_order = 2   # the docs' order: Clips, Rig as read, Bone Map, Motion tools, Backend
    bl_label = "Bone Map"

    def draw_header(self, context):
        obj, err = target_armature(context)
        if err is None and not self._usable(obj):
            self.layout.label(text="", icon="ERROR")

    @staticmethod
    def _usable(obj):
        if len(_stored(obj).roles):
            return bonemap.is_usable(_status(obj.data))
        return not _auto_summary(obj)[2]

    def draw(self, context):
        layout = self.layout
        obj, err = target_armature(context)
        if err:
            layout.label(text=err, icon="INFO")
            return
        stored = _stored(obj)
        if not len(stored.roles):
            self._draw_auto(layout, obj)
        else:
            self._draw_map(layout, obj, stored)
        ctl = control_rig.recognise(obj)
        if ctl is not None:
            self._draw_controls(layout, obj, ctl, context.scene.motionmill.controls)
        row = layout.row(align=True)
        row.menu("MOTIONMILL_MT_bone_map_presets", text="Presets", icon="PRESET")
        row.operator("motionmill.bone_map_save_preset", text="Save", icon="ADD")

    def _draw_controls(self, layout, obj, ctl, mode):
        """A control rig's roles name its deform bones; what gets keys are the controls listed here per role."""
        col = layout.box().column(align=True)
        col.label(text=f"Keys on controls: {ctl.describe(mode)}", icon="CON_ARMATURE")
        try:
            roles = rig.mapping_for(obj).roles
        except SkeletonError as err:
            col.label(text=str(err).splitlines()[0], icon="ERROR")
            return
        for role, bones in _controls_by_role(obj, ctl, roles, mode):
            for line in _wrap(f"{bonemap.label(role)}: {', '.join(bones)}", 38):
                col.label(text=line, icon="BLANK1")

    def _draw_auto(self, layout, obj):
        preset, n, missing = _auto_summary(obj)
        col = layout.column(align=True)
        col.label(text=f"Auto-map: {preset or 'from the rig structure'}, {n} roles")
        if missing:
            box = col.box()
            box.alert = True
            box.label(text=f"Cannot retarget: {len(missing)} required roles not found", icon="ERROR")
            box.label(text=", ".join(bonemap.label(r) for r in missing))
        layout.operator("motionmill.bone_map_edit", icon="BONE_DATA")

    def _draw_map(self, layout, obj, stored):
        layout.label(text=f"Edited, from {stored.source or 'the panel'}", icon="BONE_DATA")
        layout.template_list("MOTIONMILL_UL_bone_map", "", stored, "roles", stored, "index", rows=6)
        if 0 <= stored.index < len(stored.roles):
            box = layout.box()
            box.scale_y = 0.8
            role = stored.roles[stored.index].name
            box.label(text=bonemap.label(role) + ":")
            for line in _wrap(bonemap.describe(role), 38):
                box.label(text=line)
        st = _status(obj.data)
        if not bonemap.is_usable(st):
            box = layout.box()
            box.alert = True
            for k, line in enumerate(_wrap(_problem_line(st), 38)):
                box.label(text=line, icon="ERROR" if k == 0 else "BLANK1")
        row = layout.row(align=True)
        row.operator("motionmill.bone_map_mirror", text="Left to Right", icon="MOD_MIRROR").source = "left"
        row.operator("motionmill.bone_map_mirror", text="Right to Left").source = "right"
        layout.operator("motionmill.bone_map_clear", icon="LOOP_BACK")


def _wrap(text, width):
    import textwrap
    return textwrap.wrap(text, width) or [""]


CLASSES = (MOTIONMILL_OT_bone_map_edit, MOTIONMILL_OT_bone_map_clear, MOTIONMILL_OT_bone_map_use_active,
           MOTIONMILL_OT_bone_map_mirror, MOTIONMILL_OT_bone_map_save_preset, MOTIONMILL_OT_bone_map_load_preset,
           MOTIONMILL_OT_bone_map_delete_preset, MOTIONMILL_MT_bone_map_presets, MOTIONMILL_UL_bone_map,
           MOTIONMILL_OT_bone_map_pick,
           MOTIONMILL_PT_bone_map)
