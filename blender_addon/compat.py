"""Blender 4.2 LTS .. 5.0 animation API differences, in one place.

4.2/4.3: Action.fcurves, no slots.  4.4+: slotted actions (action.slots, animation_data.action_slot,
NlaStrip.action_slot).  5.0: Action.fcurves removed; F-curves live in channelbags
(action.layers[0].strips[0].channelbag(slot, ensure=True).fcurves).
"""


def has_slots(action):
    return hasattr(action, "slots")


def ensure_slot(action, id_data):
    """The action's slot for `id_data` (created if needed); None on Blender without slotted actions."""
    if not has_slots(action):
        return None
    id_type = getattr(id_data, "id_type", "OBJECT")
    for slot in action.slots:
        if slot.target_id_type == id_type and slot.name_display == id_data.name:
            return slot
    return action.slots.new(id_type=id_type, name=id_data.name)


def fcurves_for(action, slot=None):
    """The F-curve collection of `action` for `slot`, created if needed, on either API.

    Blender 4.4+ (layered): the first layer's first keyframe strip's channelbag for the slot.
    Older Blender: action.fcurves (slot ignored)."""
    if hasattr(action, "layers") and slot is not None:
        layer = action.layers[0] if len(action.layers) else action.layers.new("Layer")
        strip = layer.strips[0] if len(layer.strips) else layer.strips.new(type="KEYFRAME")
        return strip.channelbag(slot, ensure=True).fcurves
    if hasattr(action, "fcurves"):
        return action.fcurves
    raise RuntimeError("this Blender's actions have neither fcurves nor layers")


def new_fcurve(fcurves, data_path, index, group):
    """fcurves.new with the F-curve grouped under `group` (a bone name) on either API.

    `fcurves` is what fcurves_for returned: a channelbag's collection (4.4+) or Action.fcurves (4.2/4.3)."""
    import bpy
    bag = getattr(fcurves, "data", None)  # the collection's owner: an ActionChannelbag or an Action
    if not hasattr(bag, "groups") or not hasattr(bag, "slot"):
        return fcurves.new(data_path, index=index, action_group=group)     # Action.fcurves (4.2/4.3)
    if bpy.app.version >= (5, 0, 0):
        return fcurves.new(data_path, index=index, group_name=group)       # channelbag, 5.0+
    # Blender 4.4/4.5: ActionChannelbagFCurves.new(data_path, index) has no group argument (group_name
    # arrived in 5.0), so the group is found or made in the channelbag and assigned afterwards.
    fc = fcurves.new(data_path, index=index)
    fc.group = bag.groups.get(group) or bag.groups.new(group)
    return fc


def assign_action(id_data, action, slot=None):
    """Make `action` (and its slot) the active action of `id_data`."""
    ad = id_data.animation_data or id_data.animation_data_create()
    ad.action = action
    if slot is not None and hasattr(ad, "action_slot"):
        ad.action_slot = slot


def set_strip_slot(strip, slot):
    if slot is not None and hasattr(strip, "action_slot"):
        strip.action_slot = slot


def all_fcurves(action):
    """Every F-curve of an action (all slots), on either API."""
    if hasattr(action, "layers"):
        out = []
        for layer in action.layers:
            for strip in layer.strips:
                for bag in getattr(strip, "channelbags", ()):
                    out.extend(bag.fcurves)
        if out or not hasattr(action, "fcurves"):
            return out
    return list(action.fcurves)


def invoke_import(op, context):
    """Invoke an ImportHelper operator as Blender's own importers do: with its file path already set (a file dropped
    onto the viewport through a FileHandler) it shows its options in a popup, else the file browser.
    ImportHelper.invoke_popup arrived in 4.2; older Blender always opens the file browser."""
    if hasattr(op, "invoke_popup"):
        return op.invoke_popup(context)
    context.window_manager.fileselect_add(op)
    return {"RUNNING_MODAL"}
