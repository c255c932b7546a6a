"""The bone map the panel shows and edits, and the user's saved bone-map presets. No bpy: the panel and its
operators (ui_bonemap.py) are thin over these functions, and the tests call them in any Python.

A map is a plain dict role -> bone name (roles as in retarget.mapping.ROLES). The map edited in the panel is stored
on the armature (props.MOTIONMILL_PG_bone_map); when a rig has one, the retarget uses it instead of the auto-map.

A saved preset is a JSON file in `<MotionMill data folder>/bone_maps/`, written in the format of retarget's own
presets (retarget/presets/*.json): each role lists one alias, the exact bone name, and `priority` is high. So the
auto-map reads saved presets next to the built-in ones (`auto_map` below) and maps any rig with the same bone names
with no hand work; a file written by hand in that format, with `{side}` placeholders, works too.
"""
import json
import os
import re

from . import paths
from ._rt import mapping as mapping_mod

PRESET_FOLDER = "bone_maps"
USER_PRIORITY = 100  # above every built-in preset: a map the user saved wins a tie with a built-in naming scheme

# What each role means on the target rig, in the animator's words: the bone whose HEAD sits at that joint.
ROLE_HELP = {
    "root": "optional bone under the hips at the ground; carries travel and heading with Root motion: Root bone",
    "pelvis": "the hips: the bone the legs and the spine hang from",
    "spine1": "lowest spine bone, just above the hips",
    "spine2": "middle spine bone",
    "spine3": "upper spine bone (chest), where the collarbones start",
    "neck": "the neck bone",
    "head": "the head bone (not a head-top end bone)",
    "collar": "the collarbone (clavicle), between the chest and the upper arm",
    "shoulder": "the upper arm, starting at the shoulder joint",
    "elbow": "the forearm, starting at the elbow",
    "wrist": "the hand, starting at the wrist",
    "hip": "the thigh, starting at the hip joint",
    "knee": "the shin, starting at the knee",
    "ankle": "the foot, starting at the ankle",
    "foot": "the toes (ball of the foot)",
}
SIDES = ("left", "right")


def describe(role):
    """One line saying which bone plays `role` ("left_knee" -> "left: the shin, starting at the knee"), and whether
    the retarget needs it."""
    side, limb = split_role(role)
    text = ROLE_HELP[limb]
    if side:
        text = f"{side} side: {text}"
    return text + (" (required)" if role in mapping_mod.REQUIRED_ROLES else " (optional)")


def split_role(role):
    """("left", "knee") for "left_knee", ("", "head") for "head"."""
    side, _, limb = role.partition("_")
    return (side, limb) if side in SIDES else ("", role)


def mirror_role(role):
    """The same role on the other side, or None for a centre role."""
    side, limb = split_role(role)
    if not side:
        return None
    return f"{SIDES[1 - SIDES.index(side)]}_{limb}"


def label(role, short=False):
    """The role as the panel names it: "Left knee", "Spine 2"; short, as the list's narrow column shows it: "L knee"."""
    side, limb = split_role(role)
    limb = re.sub(r"(\d)$", r" \1", limb)
    if not side:
        return limb.capitalize()
    return f"{side[0].upper()} {limb}" if short else f"{side.capitalize()} {limb}"


def shared_prefix(names):
    """The prefix every name shares, up to and including its last separator ("mixamorig:", "J_Bip_", "DEF-"): the
    list shows bones without it, so that a narrow sidebar keeps the part that tells them apart."""
    names = [n for n in names if n]
    if len(names) < 2:
        return ""
    common = os.path.commonprefix(names)
    cut = max(common.rfind(c) for c in ":_-. ")
    return common[:cut + 1] if cut >= 0 else ""


# ------------------------------------------------------------------------------------------------- editing

def status(roles, bone_names, required=mapping_mod.REQUIRED_ROLES):
    """What the panel marks on a map: {"missing_required": [role], "missing_optional": [role],
    "unknown": {role: bone}, "duplicates": {bone: [role, ...]}}; the map is usable when all of them are empty but
    missing_optional. `required`: the rig's required roles (mapping.required_roles: an arm without a hand bone needs
    no wrist)."""
    names = set(bone_names)
    mapped = {r: b for r, b in roles.items() if b}
    by_bone = {}
    for r in mapping_mod.ROLES:
        if r in mapped:
            by_bone.setdefault(mapped[r], []).append(r)
    return {"missing_required": [r for r in required if r not in mapped],
            "missing_optional": [r for r in mapping_mod.ROLES if r not in mapped and r not in required],
            "unknown": {r: b for r, b in mapped.items() if b not in names},
            "duplicates": {b: rs for b, rs in by_bone.items() if len(rs) > 1}}


def is_usable(st):
    return not (st["missing_required"] or st["unknown"] or st["duplicates"])


def mirror_roles(roles, bone_names, flip, source="left"):
    """Fill the other side's roles from `source`'s: each bone name flipped by `flip` (Blender's bpy.utils.flip_name:
    .L/.R, _l/_r, Left/Right, ...). Returns (new roles, [source roles whose flipped name is not a bone of the rig]).
    Roles on the source side that are empty leave the other side as it was."""
    names = set(bone_names)
    out, unmatched = dict(roles), []
    for role, bone in roles.items():
        side, _ = split_role(role)
        if side != source or not bone:
            continue
        other = flip(bone)
        if other != bone and other in names:
            out[mirror_role(role)] = other
        else:
            unmatched.append(role)
    return out, unmatched


def merge(auto, roles, skeleton=None):
    """The Mapping the retarget uses for a map edited in the panel: exactly its roles, plus the auto-map's twist and
    IK/helper bones that the edited roles do not claim. `auto` is the auto-map of the same rig."""
    roles = {r: roles[r] for r in mapping_mod.ROLES if roles.get(r)}
    used = set(roles.values())
    twist = [t for t in auto.twist if t["bone"] not in used and t["limb"] in roles]
    classes = {b: c for b, c in auto.classes.items() if b not in used}
    rep = auto.report or {}
    required = mapping_mod.REQUIRED_ROLES if skeleton is None else mapping_mod.required_roles(skeleton, roles)
    report = {"preset": "edited in the panel", "source": {r: "edited" for r in roles},
              "missing_required": [r for r in required if r not in roles],
              "missing_optional": [r for r in mapping_mod.ROLES if r not in roles and r not in required and r != "root"],
              "candidates": rep.get("candidates", {}), "notes": rep.get("notes", {}), "classes": classes}
    return mapping_mod.Mapping(roles, twist, classes, report["preset"], report)


def auto_map(skeleton):
    """retarget's auto-map with the user's saved presets next to the built-in ones."""
    return mapping_mod.auto_map(skeleton, mapping_mod.load_presets() + user_presets())


def mapping_for(skeleton, edited=None):
    """The Mapping the retarget uses: `edited` (role -> bone, from the panel) when given, else the auto-map."""
    auto = auto_map(skeleton)
    return merge(auto, edited, skeleton) if edited else auto


# ------------------------------------------------------------------------------------------------- presets

def presets_dir(create=True):
    path = os.path.join(paths.data_dir(create), PRESET_FOLDER)
    if create:
        os.makedirs(path, exist_ok=True)
    return path


def _file_name(name):
    """A preset's file name: its name with only the characters every file system takes."""
    stem = re.sub(r"[^\w\-.() ]+", "_", name.strip()).strip(" .")
    if not stem:
        raise ValueError("a bone-map preset needs a name")
    return stem + ".json"


def preset_path(name):
    return os.path.join(presets_dir(), _file_name(name))


def _read(path):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or not isinstance(data.get("roles"), dict):
        raise ValueError("not a bone-map preset (a JSON object with \"roles\")")
    data.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    return data


def list_presets():
    """[(name, path)] of the saved presets, by name. Files that cannot be read are left out."""
    folder = presets_dir(create=False)
    out = []
    if os.path.isdir(folder):
        for f in sorted(os.listdir(folder)):
            if f.endswith(".json"):
                try:
                    out.append((_read(os.path.join(folder, f))["name"], os.path.join(folder, f)))
                except (OSError, ValueError):
                    continue
    return sorted(out, key=lambda p: p[0].lower())


def presets_stamp():
    """Changes whenever a saved preset is added, removed or rewritten; cheap enough for a panel's every redraw."""
    try:
        return tuple(sorted((e.name, e.stat().st_mtime_ns) for e in os.scandir(presets_dir(create=False))
                            if e.name.endswith(".json")))
    except OSError:
        return ()


def user_presets():
    """The saved presets as retarget presets (sides expanded), for the auto-map."""
    out = []
    for _, path in list_presets():
        try:
            preset = _read(path)
            preset.setdefault("priority", USER_PRIORITY)
            out.append(mapping_mod.expand_sides(preset))
        except (OSError, ValueError):
            continue
    return out


def preset_from_mapping(name, mapping, rig_name=""):
    """A retarget preset (JSON-ready dict) holding `mapping`'s roles as exact bone names, its twist bones and its
    IK/helper bones."""
    exact = [{"pattern": f"^{re.escape(t['bone'])}$", "limb": t["limb"], "source": t["source"], "share": t["share"]}
             for t in mapping.twist]
    return {"name": name,
            "description": "saved from the MotionMill panel" + (f" (rig '{rig_name}')" if rig_name else ""),
            "priority": USER_PRIORITY,
            "roles": {r: [mapping.roles[r]] for r in mapping_mod.ROLES if r in mapping.roles},
            "twist": exact,
            "ik": [f"^{re.escape(b)}$" for b, c in sorted(mapping.classes.items()) if c == "ik"]}


def save_preset(name, mapping, rig_name=""):
    """Write `mapping` as the preset `name` (replacing one of that name). Returns the file's path."""
    path = preset_path(name)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(preset_from_mapping(name.strip(), mapping, rig_name), f, indent=1)
        f.write("\n")
    os.replace(tmp, path)
    return path


def find_preset(name):
    for n, path in list_presets():
        if n == name:
            return path
    raise ValueError(f"no bone-map preset named {name!r} in {presets_dir(create=False)}")


def load_preset(name):
    """The preset `name` as a retarget preset (sides expanded)."""
    path = find_preset(name)
    try:
        return mapping_mod.expand_sides(_read(path))
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read bone-map preset {path}: {err}") from None


def delete_preset(name):
    os.remove(find_preset(name))


def roles_from_preset(preset, bone_names):
    """role -> bone for each role of `preset` with an alias naming a bone of the rig (exact name first, then
    case-insensitive); the roles it has no bone for are left out."""
    exact = set(bone_names)
    lower = {n.lower(): n for n in bone_names}
    roles, used = {}, set()
    for role, aliases in preset.get("roles", {}).items():
        for a in aliases:
            bone = a if a in exact else lower.get(a.lower())
            if bone is not None and bone not in used:
                roles[role] = bone
                used.add(bone)
                break
    return roles
