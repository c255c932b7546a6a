"""Control rigs (a generated Rigify rig): recognise one, read its deform skeleton, and turn the deform bones'
retargeted pose into keys on its controls, solved through Blender's own evaluation of the rig.

The solve (`solve_controls`): each keyed control's target pose comes from the deform pose (retarget.controls). A
pruned copy of the rig (only the bones the controls' parents depend on) gets one target bone per control and a
Copy Transforms / Rotation / Location constraint from it onto the control; for each frame the targets are set and
the copy is evaluated once; each control's channels then follow from its own and its parent's evaluated matrices.
The copy is removed; the user's rig is never changed, only keyed.
"""
import re
from contextlib import contextmanager

import bpy
import numpy as np

from . import keying
from ._rt import controls as controls_mod, rotations, skeleton, transfer

TARGET_PREFIX = "MM-target-"


class ControlRig:
    """A recognised control rig: armature `obj` and its preset (retarget/presets/control_rigs/*.json)."""

    def __init__(self, obj, preset):
        self.obj, self.preset = obj, preset

    @property
    def label(self):
        return self.preset.get("label", self.preset["name"])

    def describe(self, mode):
        return f"{self.label}, {controls_mod.MODE_LABELS[mode]}"

    def deform_bones(self):
        """{deform bone name: its deform parent or None}: each deform bone under the nearest deform bone above it,
        through the mechanism bones' twins (ORG-spine stands for DEF-spine), as the metarig had them."""
        bones = self.obj.data.bones
        pre = self.preset["deform_prefix"]
        deform = [b.name for b in bones if b.name.startswith(pre)]
        found = set(deform)

        def twin(name):
            if name in found:
                return name
            for m in self.preset.get("mechanism_prefixes", ()):
                if name.startswith(m) and pre + name[len(m):] in found:
                    return pre + name[len(m):]
            return None
        parents = {}
        for n in deform:
            b, p = bones[n].parent, None
            while b is not None:
                t = twin(b.name)
                if t is not None and t != n:
                    p = t
                    break
                b = b.parent
            parents[n] = p
        return parents

    def plan(self, mode, root_motion="hips"):
        """(controls [(bone, follow deform bone, keys, seed)], poles [(bone, (top, mid, end))], switches
        [(bone, property, value)], root bone or None) keyed in `mode`. A seed control is the root of an IK chain:
        keyed as the deform bone it follows, the IK solver's starting pose (Blender's IK, with stretchy bones, lands
        nearer the pose it starts from)."""
        p = self.preset
        bones = self.obj.data.bones

        def entries(specs):
            out = []
            for c in specs:
                if c["follow"] not in bones:        # a rig without that deform bone (no forearm, no toe)
                    continue
                names = [c["bone"]] if isinstance(c["bone"], str) else c["bone"]
                bone = next((n for n in names if n in bones), names[0])   # a missing one is reported by the solve
                out.append((bone, c["follow"], c["keys"], c.get("seed", False)))
            return out
        keyed = entries(p["body"])
        poles, switches = [], []
        for limb in p["limbs"]:
            ik = controls_mod.limb_uses_ik(limb, mode)
            keyed += entries(limb["ik" if ik else "fk"])
            switches.append((limb["switch"], p["switch"]["property"], p["switch"]["ik" if ik else "fk"]))
            if ik:
                poles.append((limb["pole"]["bone"], tuple(limb["pole"]["chain"])))
                switches += [(limb["switch"], s["property"], s["value"]) for s in p.get("ik_switches", ())]
        root = p["root"]["bone"] if root_motion == "root" and p.get("root") else None
        return keyed, poles, switches, root

    def controls_by_role(self, roles, mode, root_motion="hips"):
        """{role: [controls keyed for it]} for a map `roles` (role -> deform bone): a control goes to the role of the
        deform bone it follows or, for a bone no role names (a twist or neck segment), of the nearest one above it; a
        pole to the role of its chain's middle joint (knee, elbow)."""
        role_of = {b: r for r, b in roles.items()}
        parents = self.deform_bones()

        def role_for(bone):
            while bone is not None and bone not in role_of:
                bone = parents.get(bone)
            return role_of.get(bone)
        keyed, poles, _, root = self.plan(mode, root_motion)
        out = {}
        for bone, follow, *_ in keyed:
            out.setdefault(role_for(follow), []).append(bone)
        for bone, chain in poles:
            out.setdefault(role_for(chain[1]), []).append(bone)
        if root:
            out.setdefault("root", []).append(root)
        out.pop(None, None)
        return out

    def posed_controls(self, roles, exclude):
        """Controls the body's deform bones depend on, other than `exclude`, that are away from their rest pose
        now (a rig saved mid-pose: a heel roll, a moved tweak). The solve holds them at rest, and they are keyed
        there: left as they are they would bend the clip. The body: the deform bones `roles` (role -> bone) name,
        and those between them (twist and neck segments); not the face or the fingers."""
        parents = self.deform_bones()
        body = set()
        for bone in roles.values():
            while bone is not None and bone not in body:
                body.add(bone)
                bone = parents.get(bone)
        skip = tuple(self.preset.get("not_controls", ()))
        posed = []
        for n in sorted(_needed(self.obj, [b for b in body if b in self.obj.pose.bones])):
            if n in exclude or n.startswith(skip):
                continue
            if np.abs(np.array(self.obj.pose.bones[n].matrix_basis) - np.eye(4)).max() > 1e-6:
                posed.append(n)
        return posed

    def direct_bones(self, names):
        return []            # every key goes on a control

    def holds_feet_flat(self, mode):
        """Whether planted feet are held in one pose: they are keyed on IK foot controls."""
        return mode != "fk"

    def keyed_bones(self, mode, root_motion="hips"):
        keyed, poles, _, root = self.plan(mode, root_motion)
        return [c[0] for c in keyed] + [b for b, _ in poles] + ([root] if root else [])


def recognise(obj):
    """The ControlRig for armature `obj`, or None for a rig that is keyed on its own bones."""
    if obj is None or obj.type != "ARMATURE":
        return None
    bones = obj.data.bones
    for preset in controls_mod.load_presets():
        d = preset["detect"]
        prop = d.get("custom_property")
        if prop and prop not in obj.data and prop not in obj:
            continue
        if not all(b in bones for b in d.get("bones", ())):
            continue
        switch = d.get("switch_property")
        if switch and not all(switch in obj.pose.bones[limb["switch"]] for limb in preset["limbs"]
                              if limb["switch"] in obj.pose.bones):
            continue
        if any(b.name.startswith(preset["deform_prefix"]) for b in bones):
            return ControlRig(obj, preset)
    return None


# constraints that, at full influence, decide a bone's pose whatever its keys say (Child Of keeps the keys but
# re-parents them, which the retarget's channels do not allow for)
_OVERRIDES = {"COPY_TRANSFORMS", "DAMPED_TRACK", "TRACK_TO", "LOCKED_TRACK", "STRETCH_TO", "CHILD_OF"}


def _full(c):
    return getattr(c, "enabled", not c.mute) and c.influence >= 0.999


def _overrides(obj):
    """{bone: (why, constraint, owner)} for the bones whose keys a constraint overrides: members of an IK chain with
    a target (owner: the bone holding the IK), bones with Copy Transforms, Child Of, a track or stretch constraint,
    or Copy Rotation on all three axes (replacing), each enabled at full influence."""
    found = {}
    for pb in obj.pose.bones:
        for c in pb.constraints:
            if not _full(c):
                continue
            if c.type == "IK" and getattr(c, "target", None) is not None:
                b, n = pb, c.chain_count or len(obj.pose.bones)
                while b is not None and n > 0:
                    found.setdefault(b.name, (f"the IK constraint {c.name!r} on {pb.name!r}", c, pb.name))
                    b, n = b.parent, n - 1
            elif c.type in _OVERRIDES or (c.type == "COPY_ROTATION" and c.use_x and c.use_y and c.use_z
                                          and getattr(c, "mix_mode", "REPLACE") == "REPLACE"):
                found.setdefault(pb.name, (f"its {c.type.replace('_', ' ').title()} constraint {c.name!r}", c, pb.name))
    return found


def ik_target_parents(obj):
    """{bone: chain tip} for each deforming bone that an IK chain of `obj` reaches for and whose head stands where the
    chain ends (within a tenth of the tip bone's length), outside the chain's own hierarchy. RobotExpressive's feet
    are such bones: root bones next to pole targets, which the IK shins reach for. The retarget reads them as the
    chain's next bone, and ConstraintRig keys them as the IK targets they are."""
    bones, out = obj.data.bones, {}
    for pb in obj.pose.bones:
        for c in pb.constraints:
            if c.type != "IK" or getattr(c, "target", None) != obj or not c.subtarget or not _full(c):
                continue
            tip, goal = bones[pb.name], bones.get(c.subtarget)
            if goal is None or not goal.use_deform or goal.name in out:
                continue
            end = tip.tail_local if c.use_tail else tip.head_local
            if (goal.head_local - end).length > 0.1 * tip.length:
                continue
            if goal in tip.parent_recursive or tip in goal.children_recursive or tip == goal:
                continue
            out[goal.name] = tip.name
    return out


def constraint_driven(obj):
    """{bone name: why} for the bones whose keys a constraint overrides (see _overrides)."""
    return {b: why for b, (why, _, _) in _overrides(obj).items()}


class ConstraintRig:
    """A rig keyed on its own bones, where the map puts roles on bones constraints move (an IK leg, a bone copying a
    control): those roles are keyed on the bones that drive them (the IK target and pole, the copied bone), solved
    as a control rig's controls are; every other bone gets its keys directly. Made by `for_rig`."""

    label = "control rig"

    def __init__(self, obj, keyed, poles, driven, ik, notes):
        self.obj, self.keyed, self.poles, self.driven, self.ik, self.notes = obj, keyed, poles, driven, ik, notes

    def holds_feet_flat(self, mode):
        return self.ik

    def describe(self, mode):
        """What the constraints move and what is keyed instead, e.g. "left_hip 'thigh.l' (the IK constraint 'IK'
        on 'shin.l') keyed on 'leg.Ik.l', pole 'knee.pole.l'"."""
        return "; ".join(self.notes)

    def plan(self, mode, root_motion="hips"):
        return list(self.keyed), list(self.poles), [], None

    def keyed_bones(self, mode, root_motion="hips"):
        return [c[0] for c in self.keyed] + [b for b, _ in self.poles]

    def posed_controls(self, roles, exclude):
        return []

    def direct_bones(self, names):
        """Of the skeleton's bones `names`, those keyed directly: neither moved by a constraint nor a control."""
        skip = set(self.driven) | set(self.keyed_bones(None))
        return [n for n in names if n not in skip]


def for_rig(obj, roles):
    """The control rig to key for armature `obj` with its map `roles` (role -> bone): a recognised one (Rigify), a
    ConstraintRig when roles sit on constraint-driven bones, or None for a rig keyed on its own bones. Raises
    SkeletonError (one line, naming bone, role and constraint) when such a role has no bone driving it."""
    ctl = recognise(obj)
    if ctl is not None:
        return ctl
    found = _overrides(obj)
    hit = [(r, b) for r, b in roles.items() if b in found]
    if not hit:
        return None
    copier = {}        # control -> the bone that copies its rotation
    for pb in obj.pose.bones:
        for c in pb.constraints:
            if _full(c) and c.type in ("COPY_ROTATION", "COPY_TRANSFORMS") and getattr(c, "target", None) == obj \
                    and c.subtarget:
                copier.setdefault(c.subtarget, pb.name)
    reaching = ik_target_parents(obj)
    keyed, poles, seen, notes = [], [], set(), {}      # notes: (why, keyed on) -> roles
    for role, bone in hit:
        why, c, owner = found[bone]
        driver = c.subtarget if getattr(c, "target", None) == obj and getattr(c, "subtarget", "") else ""
        if c.type == "IK" and driver:
            if driver not in seen:
                # an IK target that is itself a bone of the body (ik_target_parents) takes its own pose
                follow = driver if driver in reaching else copier.get(driver, owner)
                keyed.append((driver, follow, "location rotation", False))
            pole = c.pole_subtarget if getattr(c, "pole_target", None) == obj else ""
            if pole and pole not in seen:
                top, n = obj.pose.bones[owner], (c.chain_count or len(obj.pose.bones)) - 1
                while n > 0 and top.parent is not None:
                    top, n = top.parent, n - 1
                poles.append((pole, (top.name, owner, owner + TAIL)))
            seen.update({driver, pole})
            notes.setdefault((why, f"{driver!r}" + (f", pole {pole!r}" if pole else "")), []).append(f"{role} {bone!r}")
        elif c.type in ("COPY_TRANSFORMS", "COPY_ROTATION") and driver:
            if driver not in seen:
                keyed.append((driver, bone, _KEYS[c.type], False))
                seen.add(driver)
            notes.setdefault((why, f"{driver!r}"), []).append(f"{role} {bone!r}")
        else:
            raise skeleton.SkeletonError(
                f"cannot key {bone!r} ({role}): {why} overrides its keys and no bone of the rig drives it; map {role} "
                f"to a bone no constraint moves")
    # a bone hanging from a constraint-moved one (a foot under an IK shin) is keyed against the parent as Blender
    # evaluates it, which need not turn about its own axis as the retarget's did
    for pb in obj.pose.bones:
        if pb.name not in found and pb.name not in seen and pb.parent is not None and pb.parent.name in found:
            keyed.append((pb.name, pb.name, "rotation", False))
    notes = [f"{', '.join(roles)} ({why}) keyed on {on}" for (why, on), roles in notes.items()]
    return ConstraintRig(obj, keyed, poles, found, any(found[b][1].type == "IK" for _, b in hit), notes)


def location_tolerance(skel, roles, rotation_deg, location_m):
    """Key reduction's location tolerance (metres) for a control rig: a control's location can turn a short deform bone
    (Rigify's neck bones stretch between two tweaks), so its error must stay under rotation_deg of the shortest bone
    the map names, and under location_m."""
    idx = [skel.names.index(b) for b in roles.values()]
    shortest = float(np.min(skel.lengths[idx])) * skel.object_scale
    return min(location_m, shortest * np.radians(rotation_deg))


TAIL = "@tail"     # a pole chain's end point: the tail of the bone named before it
_KEYS = {"COPY_TRANSFORMS": "location rotation", "COPY_ROTATION": "rotation"}


# ------------------------------------------------------------------------------------------------------ the solve

_BONE = r'bones\["((?:[^"\\]|\\.)*)"\]'                  # a bone's name in an RNA path
_BONE_PATH = re.compile(r"pose\." + _BONE)                  # a pose bone's channel, property or constraint
_OWNED_PATH = re.compile(r"(?:pose\.)?" + _BONE)             # ... or its armature bone's


def _dependencies(obj):
    """{bone: bones its evaluated pose depends on}: parent, constraint targets, driver inputs, and, for a member of
    an IK chain, the bone holding the IK constraint."""
    deps = {pb.name: set() for pb in obj.pose.bones}
    for pb in obj.pose.bones:
        d = deps[pb.name]
        if pb.parent is not None:
            d.add(pb.parent.name)
        for c in pb.constraints:
            for tgt, sub in (("target", "subtarget"), ("pole_target", "pole_subtarget")):
                if getattr(c, tgt, None) == obj and getattr(c, sub, ""):
                    d.add(getattr(c, sub))
            for t in getattr(c, "targets", ()) if c.type == "ARMATURE" else ():
                if t.target == obj and t.subtarget:
                    d.add(t.subtarget)
            if c.type in ("IK", "SPLINE_IK"):
                b, n = pb.parent, (c.chain_count or 1000) - 1
                while b is not None and n > 0:
                    deps[b.name].add(pb.name)
                    b, n = b.parent, n - 1
    for fc in (obj.animation_data.drivers if obj.animation_data else ()):
        m = _BONE_PATH.match(fc.data_path)
        if m is None or m.group(1) not in deps:
            continue
        for v in fc.driver.variables:
            for t in v.targets:
                if t.id == obj:
                    refs = _BONE_PATH.findall(t.data_path or "") + ([t.bone_target] if t.bone_target else [])
                    deps[m.group(1)].update(r for r in refs if r in deps)
    return deps


def _needed(obj, bones):
    """`bones` and every bone their evaluation depends on."""
    deps = _dependencies(obj)
    keep, todo = set(), list(bones)
    while todo:
        b = todo.pop()
        if b not in keep:
            keep.add(b)
            todo.extend(deps.get(b, ()))
    return keep


@contextmanager
def _object_mode(obj):
    """Object mode with `obj` alone selected and active; the user's mode, active object and selection come back."""
    view_layer = bpy.context.view_layer
    active, mode = view_layer.objects.active, bpy.context.mode
    selected = [o for o in view_layer.objects if o.select_get()]
    if mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    for o in selected:
        o.select_set(False)
    view_layer.objects.active = obj
    obj.select_set(True)
    try:
        yield
    finally:
        if bpy.context.mode != "OBJECT":
            bpy.ops.object.mode_set(mode="OBJECT")
        if obj.name in view_layer.objects:
            obj.select_set(False)
        for o in selected:
            if o.name in view_layer.objects:
                o.select_set(True)
        view_layer.objects.active = active
        if mode != "OBJECT" and active is not None:
            bpy.ops.object.mode_set(mode={"POSE": "POSE", "EDIT_ARMATURE": "EDIT"}.get(mode, "OBJECT"))


def _remap(copy, obj):
    """Point the copy's constraints and drivers that aimed at `obj` (a rig's own bones) at the copy itself."""
    for pb in copy.pose.bones:
        for c in pb.constraints:
            for attr in ("target", "pole_target"):
                if getattr(c, attr, None) == obj:
                    setattr(c, attr, copy)
            for t in getattr(c, "targets", ()) if c.type == "ARMATURE" else ():
                if t.target == obj:
                    t.target = copy
    for owner in (copy, copy.data):
        ad = owner.animation_data
        if ad is None:
            continue
        for fc in ad.drivers:
            for v in fc.driver.variables:
                for t in v.targets:
                    if t.id == obj or t.id == obj.data:
                        t.id = copy if t.id == obj else copy.data


def _drop_drivers(copy, keep):
    """Remove the copy's drivers on bones it no longer has (they would only warn)."""
    for owner in (copy, copy.data):
        ad = owner.animation_data
        if ad is None:
            continue
        for fc in list(ad.drivers):
            m = _OWNED_PATH.match(fc.data_path)
            if m is not None and m.group(1) not in keep:
                ad.drivers.remove(fc)


def _evaluation_copy(obj, keep, targets):
    """A linked-in copy of rig `obj` with only the bones in `keep`, plus one root bone per name in `targets` whose
    rest is the identity (its pose basis is then its armature-space matrix)."""
    copy = obj.copy()
    copy.data = obj.data.copy()
    copy.name = copy.data.name = "MotionMill control solve"
    if copy.animation_data is not None:
        copy.animation_data.action = None
        for t in list(copy.animation_data.nla_tracks):
            copy.animation_data.nla_tracks.remove(t)
    bpy.context.scene.collection.objects.link(copy)
    _remap(copy, obj)
    _drop_drivers(copy, keep)
    with _object_mode(copy):
        bpy.ops.object.mode_set(mode="EDIT")
        eb = copy.data.edit_bones
        for b in list(eb):
            if b.name not in keep:
                eb.remove(b)
        for name in targets:
            t = eb.new(name)
            t.head, t.tail, t.roll, t.use_deform = (0, 0, 0), (0, 1, 0), 0.0, False
        bpy.ops.object.mode_set(mode="OBJECT")
    return copy


def _remove(copy):
    data = copy.data
    bpy.data.objects.remove(copy)
    if data.users == 0:
        bpy.data.armatures.remove(data)


def _matrices(pose_bones, buf):
    pose_bones.foreach_get("matrix", buf)
    return buf.reshape(-1, 4, 4).transpose(0, 2, 1)   # Blender's matrices come column by column


_CONSTRAINT = {"location rotation": "COPY_TRANSFORMS", "rotation": "COPY_ROTATION", "location": "COPY_LOCATION"}


def solve_controls(control_rig, anim, skel, mode, root_motion="hips", roles=None):
    """Keys for `control_rig`'s controls that make its deform bones, as Blender evaluates them, take the pose of
    `anim` (a TargetAnimation on the deform skeleton `skel`; `roles` its map, role -> deform bone). Returns
    (TargetAnimation of the controls, [(bone, property, value)] switch values to key). Other controls the body
    depends on that the rig holds away from rest (ControlRig.posed_controls) are keyed at rest."""
    obj = control_rig.obj
    keyed, poles, switches, root = control_rig.plan(mode, root_motion)
    missing = [n for n in [k[0] for k in keyed] + [b for b, _ in poles] + [s[0] for s in switches] + [root]
               if n is not None and n not in obj.pose.bones]
    if missing:
        raise skeleton.SkeletonError(f"'{obj.name}' looks like a {control_rig.label} but has no control "
                                     f"{missing[0]!r}; regenerate it with Rigify, or key it as a deform rig")
    points = [n[:-len(TAIL)] if n.endswith(TAIL) else n for _, chain in poles for n in chain]
    used = [k[1] for k in keyed] + points + ([control_rig.preset["root"][k] for k in ("pelvis", "left_hip", "right_hip")]
                                            if root is not None else [])
    A = controls_mod.armature_pose(anim, skel, list(dict.fromkeys(used)))     # only the deform bones used below
    T = anim.num_frames
    rest = {b.name: np.array(b.matrix_local) for b in obj.data.bones}
    wanted = []        # (control, (T,4,4) target, constraint type, keys)
    seeds = set()
    for bone, follow, keys, seed in keyed:
        wanted.append((bone, controls_mod.follow(A[follow], rest[follow], rest[bone]), _CONSTRAINT[keys], keys))
        if seed:
            seeds.add(bone)

    def point(name):      # a bone's head, or with TAIL its tail, in armature space (T,3)
        if name.endswith(TAIL):
            b = name[:-len(TAIL)]
            return A[b][:, :3, 3] + A[b][:, :3, 1] * obj.data.bones[b].length
        return A[name][:, :3, 3]
    for bone, (top, mid, end) in poles:
        heads = [point(n) for n in (top, mid, end)]
        rigid = controls_mod.follow(A[top], rest[top], rest[bone])[:, :3, 3]
        distance = np.linalg.norm(rest[bone][:3, 3] - rest[mid][:3, 3])
        target = np.tile(rest[bone], (T, 1, 1))
        target[:, :3, 3] = controls_mod.pole_positions(*heads, rigid, distance)
        wanted.append((bone, target, "COPY_LOCATION", "location"))
    if root is not None:
        r = control_rig.preset["root"]
        pts = [A[r[k]][:, :3, 3] for k in ("pelvis", "left_hip", "right_hip")]
        wanted.insert(0, (root, controls_mod.ground_root(*pts, rest[root], *[rest[r[k]][:3, 3] for k in
                                                          ("pelvis", "left_hip", "right_hip")]),
                          "COPY_TRANSFORMS", "location rotation"))
    names = [w[0] for w in wanted]
    direct = control_rig.direct_bones(anim.bone_names)
    posed = control_rig.posed_controls(roles, set(names) | {b for b, _, _ in switches}) if roles else []
    keep = _needed(obj, names + [s[0] for s in switches])
    target_names = [TARGET_PREFIX + n for n in names]
    copy = _evaluation_copy(obj, keep, target_names)
    solo = bpy.data.scenes.new("MotionMill control solve")
    try:
        pbs = copy.pose.bones
        for (bone, _, ctype, _), tname in zip(wanted, target_names):
            c = pbs[bone].constraints.new(ctype)
            c.target, c.subtarget = copy, tname
        for bone, prop, value in switches:
            pbs[bone][prop] = type(pbs[bone].get(prop, value))(value)
        for bone in posed:
            if bone in pbs:
                pbs[bone].matrix_basis = np.eye(4).T.tolist()
        order = [b.name for b in pbs]
        index = {n: i for i, n in enumerate(order)}
        # the targets, and the bones keyed directly (the controls' parents may hang from them)
        cols = [anim.bone_names.index(n) for n in direct]
        targets = transfer.TargetAnimation(
            tuple(target_names) + tuple(direct),
            np.concatenate([rotations.matrix_to_quaternion(np.stack([w[1][:, :3, :3] for w in wanted], 1)),
                            anim.quaternions[:, cols]], 1),
            np.concatenate([np.stack([w[1][:, :3, 3] for w in wanted], 1), anim.locations[:, cols]], 1),
            tuple(target_names) + tuple(n for n in direct if n in anim.translated), anim.fps)
        keying.key_animation(copy, targets, "MotionMill control solve", 0)
        parents = [pbs[n].parent.name if pbs[n].parent else None for n in names]
        read = [index[n] for n in names] + [index[p] for p in parents if p is not None]
        final = np.empty((T, len(read), 4, 4))
        buf = np.empty(len(order) * 16, np.float32)
        # the copy alone in a scene of its own: each frame evaluates it and nothing of the user's (meshes, other rigs)
        bpy.context.scene.collection.objects.unlink(copy)
        solo.collection.objects.link(copy)
        for t in range(T):
            solo.frame_set(t)
            depsgraph = solo.view_layers[0].depsgraph      # made by the first frame_set
            final[t] = _matrices(copy.evaluated_get(depsgraph).pose.bones, buf)[read]
    finally:
        action = copy.animation_data.action if copy.animation_data else None
        _remove(copy)
        bpy.data.scenes.remove(solo)
        if action is not None:
            bpy.data.actions.remove(action)
    n = len(names)
    quats, locs = np.empty((T, n, 4)), np.zeros((T, n, 3))
    k = n
    for i, (bone, parent) in enumerate(zip(names, parents)):
        pf = None
        if parent is not None:
            pf, k = final[:, k], k + 1
        pose = wanted[i][1] if bone in seeds else final[:, i]      # a seed: where the IK starts, not where it ends
        q, l = controls_mod.local_channels(pose, rest[bone], pf, rest[parent] if parent else None,
                                           obj.data.bones[bone].use_local_location)
        quats[:, i], locs[:, i] = q, l
    for i, w in enumerate(wanted):
        if "location" not in w[3]:
            locs[:, i] = 0.0
    at_rest = np.zeros((T, len(posed), 4))
    at_rest[..., 0] = 1.0
    translated = (tuple(w[0] for w in wanted if "location" in w[3]) + tuple(posed)
                  + tuple(n for n in direct if n in anim.translated))
    return transfer.TargetAnimation(tuple(names) + tuple(posed) + tuple(direct),
                                    np.concatenate([quats, at_rest, anim.quaternions[:, cols]], 1),
                                    np.concatenate([locs, np.zeros((T, len(posed), 3)), anim.locations[:, cols]], 1),
                                    translated, anim.fps, anim.notes), switches
