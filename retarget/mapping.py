"""Bone mapping: which target bone plays which SMPL-22 role, from JSON presets or from the rig's shape.

Public API
----------
``ROLES``, ``REQUIRED_ROLES``
    The roles (SMPL-22 joint names, plus an optional ``root`` bone under the hips). A role names the bone
    whose HEAD sits at that joint and which rotates about it: ``left_hip`` = thigh, ``left_knee`` = shin,
    ``left_ankle`` = foot, ``left_foot`` = toe, ``left_shoulder`` = upper arm, ``left_elbow`` = forearm,
    ``left_wrist`` = hand, ``left_collar`` = clavicle.
``auto_map(skeleton, presets=None) -> Mapping``
    Picks the preset (``retarget/presets/*.json``) whose aliases match most roles, fills spine/neck roles
    by spreading the preset's chain over the bones present, classes twist and IK bones, and finds what is
    still missing from the rig's topology and rest geometry. ``mapping.report`` says what came from where
    and, for each required role not found, the candidate bones.
``Mapping(roles, twist=(), classes=None, ...)``: ``roles`` is a plain dict role -> bone name.
    ``save(path)`` / ``Mapping.load(path)`` (JSON; a file holding just {role: bone} loads too),
    ``validate(skeleton)`` raises ``SkeletonError`` with one line for unknown bones, a bone claimed by two
    roles, or missing required roles (listing candidates).

Side convention for the structural fallback: the character's up is world +Z; its LEFT is where the thigh whose name
says left stands (thigh.L, UpperLeg_L, lThigh), else up x forward, its forward the mean ankle->toe direction, else
Blender's -Y (a Blender character facing -Y has its left at +X).

Preset format (see presets/*.json): ``roles`` role -> aliases (case-insensitive, after stripping
``prefixes`` regexes), ``chains`` {"spine": [...], "neck": [...]} in root-to-tip order, ``twist``
[{pattern, limb, source: child|self, share}], ``ik`` [regex] bones classed as IK/helper and left alone,
``priority`` to break ties.
"""
import json
import pathlib
import re

import numpy as np

from .skeleton import SkeletonError

SIDED = ("collar", "shoulder", "elbow", "wrist", "hip", "knee", "ankle", "foot")
ROLES = ("root", "pelvis", "spine1", "spine2", "spine3", "neck", "head") + tuple(
    f"{s}_{l}" for s in ("left", "right") for l in SIDED)
REQUIRED_ROLES = ("pelvis", "head") + tuple(
    f"{s}_{l}" for s in ("left", "right") for l in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle"))
PRESET_DIR = pathlib.Path(__file__).resolve().parent / "presets"


_SIDE_WORDS = {"left": {"{side}": "left", "{Side}": "Left", "{S}": "L", "{s}": "l"},
               "right": {"{side}": "right", "{Side}": "Right", "{S}": "R", "{s}": "r"}}


def expand_sides(preset):
    """A preset's sided roles are written once, "{side}_hip": ["{Side}UpLeg", "{S}_Thigh"], and expanded here."""
    roles = {}
    for role, aliases in preset.get("roles", {}).items():
        if "{side}" not in role:
            roles[role] = aliases
            continue
        for words in _SIDE_WORDS.values():
            def sub(text):
                for k, v in words.items():
                    text = text.replace(k, v)
                return text
            roles[sub(role)] = [sub(a) for a in aliases]
    return dict(preset, roles=roles)


def load_presets(directory=None):
    """All presets as dicts, from retarget/presets (or `directory`)."""
    d = pathlib.Path(directory) if directory else PRESET_DIR
    presets = [expand_sides(json.loads(p.read_text())) for p in sorted(d.glob("*.json"))]
    if not presets:
        raise SkeletonError(f"no bone-mapping presets found in {d}")
    return presets


class Mapping:
    def __init__(self, roles, twist=(), classes=None, preset=None, report=None):
        self.roles = {str(k): str(v) for k, v in dict(roles).items() if v}
        self.twist = [dict(t) for t in twist]
        self.classes = dict(classes or {})
        self.preset = preset
        self.report = report

    def __repr__(self):
        return f"Mapping(preset={self.preset!r}, roles={self.roles!r})"

    def to_dict(self):
        return {"preset": self.preset, "roles": dict(self.roles), "twist": self.twist, "classes": self.classes}

    def save(self, path):
        pathlib.Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def from_dict(cls, d):
        if "roles" not in d:  # a plain {role: bone} dict
            return cls(d)
        return cls(d["roles"], d.get("twist", ()), d.get("classes"), d.get("preset"))

    @classmethod
    def load(cls, path):
        try:
            d = json.loads(pathlib.Path(path).read_text())
        except (OSError, ValueError) as e:
            raise SkeletonError(f"cannot read bone mapping {path}: {e}") from None
        if not isinstance(d, dict):
            raise SkeletonError(f"bone mapping {path} must be a JSON object role -> bone name")
        return cls.from_dict(d)

    def validate(self, skeleton, required=None):
        """Raise SkeletonError (one line) unless every role names a distinct existing bone and required roles are present."""
        unknown_roles = sorted(set(self.roles) - set(ROLES))
        if unknown_roles:
            raise SkeletonError(f"unknown role(s) {unknown_roles} in the bone mapping; roles are {list(ROLES)}")
        missing_bones = {r: b for r, b in self.roles.items() if b not in skeleton.names}
        if missing_bones:
            raise SkeletonError(f"the bone mapping names bones the armature does not have: {missing_bones}")
        seen = {}
        for r, b in self.roles.items():
            if b in seen:
                raise SkeletonError(f"bone {b!r} is mapped to two roles, {seen[b]!r} and {r!r}; each bone may play one role")
            seen[b] = r
        required = required_roles(skeleton, self.roles) if required is None else required
        missing = [r for r in required if r not in self.roles]
        if missing:
            cands = (self.report or {}).get("candidates", {})
            notes = (self.report or {}).get("notes", {})
            detail = "; ".join(f"{r}: candidates {cands.get(r, [])}" + (f", {notes[r]}" if r in notes else "") for r in missing)
            raise SkeletonError(f"cannot retarget: required role(s) not mapped ({detail})")
        return self


def required_roles(skeleton, roles):
    """REQUIRED_ROLES for this rig and map. A wrist is required unless the arm has no hand bone: the mapped forearm
    ends the arm (a robot whose hands are modelled into the forearms), or the bones below it all start together at
    its end (RobotExpressive's palm bones, none of which alone is the hand). The hand then keeps its rest pose
    against the forearm, which the retarget aims by its own axis."""
    handless = set()
    for s in ("left", "right"):
        if roles.get(f"{s}_elbow") not in skeleton.names or roles.get(f"{s}_wrist"):
            continue
        e = skeleton.names.index(roles[f"{s}_elbow"])
        if not skeleton.children[e] or split_hand(skeleton, e):
            handless.add(f"{s}_wrist")
    return tuple(r for r in REQUIRED_ROLES if r not in handless)


def split_hand(skeleton, forearm):
    """Whether two or more bones start together at the end of bone `forearm` (index): a hand split into palm bones,
    none of which alone is the hand."""
    heads, tails = skeleton.world_heads, skeleton.world_tails
    near = 0.1 * max(float(np.linalg.norm(tails[forearm] - heads[forearm])), 1e-9)
    at_end = [c for c in skeleton.children[forearm] if np.linalg.norm(heads[c] - tails[forearm]) < near]
    return any(sum(np.linalg.norm(heads[c] - heads[d]) < near / 2 for d in at_end) >= 2 for c in at_end)


# --------------------------------------------------------------------------------------------- presets

def _strip(name, prefixes):
    for p in prefixes:
        name = re.sub(p, "", name)
    return name.lower()


def _loose(name):
    """A name with case and separators folded: thigh.l, thigh_l, Thigh-L and 'thigh l' are one name."""
    return re.sub(r"[._\-\s]", "", name.lower())


def _apply_preset(skeleton, preset):
    prefixes = preset.get("prefixes", [])
    lookup = {}
    for i, n in enumerate(skeleton.names):
        lookup.setdefault(n.lower(), i)
        lookup.setdefault(_strip(n, prefixes), i)
    for i, n in enumerate(skeleton.names):   # exact names first, then separators folded
        lookup.setdefault(_loose(n), i)
        lookup.setdefault(_loose(_strip(n, prefixes)), i)
    def find(alias):
        return lookup.get(alias.lower(), lookup.get(_loose(alias)))
    roles = {}
    used = set()
    for role, aliases in preset.get("roles", {}).items():
        for a in aliases:
            i = find(a)
            if i is not None and i not in used:
                roles[role] = skeleton.names[i]
                used.add(i)
                break
    for chain_name, chain_roles in (("spine", ("spine1", "spine2", "spine3")), ("neck", ("neck",))):
        present = []
        for a in preset.get("chains", {}).get(chain_name, []):
            i = find(a)
            if i is not None and i not in used and i not in present:
                present.append(i)
        present.sort()   # root to tip as the rig has them (bones are listed parents first), whatever the preset's order
        if chain_name == "neck":
            if present and "neck" not in roles:
                roles["neck"] = skeleton.names[present[0]]
                used.add(present[0])
            continue
        if len(present) == 1:
            picks = {"spine3": present[0]}
        elif len(present) == 2:
            picks = {"spine1": present[0], "spine3": present[1]}
        elif present:
            picks = {"spine1": present[0], "spine2": present[len(present) // 2], "spine3": present[-1]}
        else:
            picks = {}
        for r, i in picks.items():
            if r not in roles:
                roles[r] = skeleton.names[i]
                used.add(i)
    classes, twist = {}, []
    for i, n in enumerate(skeleton.names):
        if i in used:
            continue
        for t in preset.get("twist", []):
            if re.search(t["pattern"], n) and t["limb"] in roles:
                twist.append({"bone": n, "limb": t["limb"], "source": t["source"], "share": float(t["share"])})
                classes[n] = "twist"
                break
        else:
            if any(re.search(p, n) for p in preset.get("ik", [])):
                classes[n] = "ik"
    return roles, twist, classes


# ----------------------------------------------------------------------------------- structural fallback

def _subtree(skeleton, i):
    out, stack = [], [i]
    while stack:
        j = stack.pop()
        out.append(j)
        stack.extend(skeleton.children[j])
    return out


def _longest_path(skeleton, i, score):
    """Chain from i following, at each bone, the child whose subtree reaches furthest by `score`."""
    chain = [i]
    while skeleton.children[chain[-1]]:
        kids = skeleton.children[chain[-1]]
        chain.append(max(kids, key=lambda c: max(score(j) for j in _subtree(skeleton, c))))
    return chain


def _structural(skeleton, roles):
    """Fill missing roles from topology and rest geometry (world z up). Returns {role: bone index}.

    Only bone heads (joint positions) are read: importers invent tails (glTF has none)."""
    heads = skeleton.world_heads
    z = heads[:, 2]
    height = z.max() - z.min()
    if height <= 0:
        return {}, {}
    found, notes = {}, {}
    # hips: the first bone (parents first) with two child subtrees reaching far down and one reaching up
    hips = None
    for i in range(len(skeleton)):
        down, up = [], []
        for c in skeleton.children[i]:
            sub = _subtree(skeleton, c)
            if heads[sub, 2].min() < z[i] - _drop(z, i, height):
                down.append(c)
            elif heads[sub, 2].max() > z[i] + 0.2 * height:
                up.append(c)
        if len(down) >= 2 and up:
            hips, legs, spine_root = i, down, max(up, key=lambda c: heads[_subtree(skeleton, c), 2].max())
            break
    if hips is None:
        hips, legs, spine_root = _sibling_pelvis(skeleton, heads, height)
    if hips is None:
        notes["pelvis"] = "no bone branches into two downward chains (legs) and one upward chain (spine)"
        return found, notes
    found["pelvis"] = hips
    up_axis = np.array([0.0, 0.0, 1.0])
    # legs
    leg_chains = []
    for c in sorted(legs, key=lambda c: heads[_subtree(skeleton, c), 2].min())[:2]:
        chain = _longest_path(skeleton, c, lambda j: -heads[j, 2])
        leg_len = z[c] - heads[chain, 2].min()
        # the thigh: the first bone pointing down (below a hip-joint bone that points sideways), unless that leaves
        # no knee and ankle below it; importers invent tails (the Godot robot's thigh points sideways), so then the
        # first bone from which the leg's joints go on down
        thighs = [next((j for j in chain if skeleton.world_axes()[j, 2] < -0.6), chain[0])] + chain
        for thigh in thighs:
            knee = next((j for j in chain if z[j] < z[thigh] - 0.3 * leg_len), None)
            ankle = next((j for j in chain if knee is not None and z[j] < z[knee] - 0.3 * leg_len), None)
            if ankle is not None:
                break
        else:
            thigh = thighs[0]
            knee = next((j for j in chain if z[j] < z[thigh] - 0.3 * leg_len), None)
            ankle = next((j for j in chain if knee is not None and z[j] < z[knee] - 0.3 * leg_len), None)
        toe = None
        if ankle is not None:
            k = chain.index(ankle)
            toe = chain[k + 1] if k + 1 < len(chain) else None
        leg_chains.append((thigh, knee, ankle, toe))
    # the character's left: from the thighs' names where they say their sides (thigh.L, UpperLeg.R), else from its
    # forward, the mean ankle -> toe, else Blender's -Y (a glTF character without toes may face +Y: names first)
    named = {name_side(skeleton.names[c[0]]): c[0] for c in leg_chains}
    left = np.zeros(3)
    if set(named) == {"left", "right"}:
        left = heads[named["left"]] - heads[named["right"]]
        left[2] = 0
    if np.linalg.norm(left) < 1e-6:
        fwd = np.zeros(3)
        for thigh, knee, ankle, toe in leg_chains:
            if ankle is not None and toe is not None:
                fwd += heads[toe] - heads[ankle]
        fwd[2] = 0
        if np.linalg.norm(fwd) < 1e-6:
            fwd = np.array([0.0, -1.0, 0.0])
        left = np.cross(up_axis, fwd)
    left /= np.linalg.norm(left)

    def side(i):
        return "left" if (heads[i] - heads[hips]) @ left > 0 else "right"
    for thigh, knee, ankle, toe in leg_chains:
        s = side(thigh)
        for limb, j in (("hip", thigh), ("knee", knee), ("ankle", ankle), ("foot", toe)):
            if j is not None:
                found[f"{s}_{limb}"] = j
    # spine: highest-reaching chain; arms branch laterally off it
    # the chain that reaches highest near the middle: raised arms reach above the head, and the spine is not in them
    spine = _longest_path(skeleton, spine_root, lambda j: z[j] - 2 * abs((heads[j] - heads[hips]) @ left))
    arm_branch, arms = None, []
    for k, j in enumerate(spine):
        lateral = [c for c in skeleton.children[j] if c not in spine and
                   np.abs((heads[_subtree(skeleton, c)] - heads[j]) @ left).max() > 0.15 * height]
        if len(lateral) >= 2:
            arm_branch, arms = k, lateral
            break
    if arm_branch is not None:
        below = spine[:arm_branch + 1]
        picks = {"spine3": below[-1]}
        if len(below) >= 2:
            picks["spine1"] = below[0]
        if len(below) >= 3:
            picks["spine2"] = below[len(below) // 2]
        found.update(picks)
        above = spine[arm_branch + 1:]
        if len(above) > 1:
            found["neck"] = above[0]
            found["head"] = _head_bone(skeleton, heads, above)
        elif above:
            found["head"] = above[0]
        for a in arms:
            chain = _longest_path(skeleton, a, lambda j: abs((heads[j] - heads[hips]) @ left))
            reach = np.abs((heads[chain] - heads[chain[0]]) @ left).max()
            s = "left" if (heads[chain[-1]] - heads[hips]) @ left > 0 else "right"
            # collar: a first bone covering less than a quarter of the arm's span
            k = 0
            if len(chain) >= 4 and abs((heads[chain[1]] - heads[chain[0]]) @ left) < 0.25 * reach:
                found[f"{s}_collar"] = chain[0]
                k = 1
            for limb, j in zip(("shoulder", "elbow", "wrist"), chain[k:k + 3]):
                if limb == "wrist" and split_hand(skeleton, found[f"{s}_elbow"]):
                    break
                found[f"{s}_{limb}"] = j
    else:
        notes["left_shoulder"] = notes["right_shoulder"] = "no spine bone has two lateral chains (arms)"
    return {r: j for r, j in found.items() if r not in roles}, notes


def _drop(z, i, height):
    """How far below bone i a chain must reach to be a leg: 0.3 of the rig's height, or half of i's height over the
    lowest joint where that is less (a target bone far above the head, like the Godot robot's look-at HEAD, makes the
    rig's height no measure of the body)."""
    return min(0.3 * height, 0.5 * (z[i] - z.min()))


def _sibling_pelvis(skeleton, heads, height):
    """(pelvis, leg children, spine root) of a rig whose leg-carrying pelvis and spine are siblings under a control
    bone (Base -> pelvis -> thighs; Base -> spine -> chest): the pelvis is the first bone with two child chains
    reaching far down, the spine its sibling chain reaching up. (None, None, None) when there is no such pair."""
    z = heads[:, 2]
    for i in range(len(skeleton)):
        p = skeleton.parents[i]
        if p < 0:
            continue
        down = [c for c in skeleton.children[i] if heads[_subtree(skeleton, c), 2].min() < z[i] - _drop(z, i, height)]
        up = [c for c in skeleton.children[p] if c != i and heads[_subtree(skeleton, c), 2].max() > z[i] + 0.2 * height]
        if len(down) >= 2 and up:
            return i, down, max(up, key=lambda c: heads[_subtree(skeleton, c), 2].max())
    return None, None, None


_CHAIN_PAIRS = tuple((f"{s}_{a}", f"{s}_{b}") for s in ("left", "right") for a, b in
                     (("collar", "shoulder"), ("shoulder", "elbow"), ("elbow", "wrist"), ("hip", "knee"),
                      ("knee", "ankle"), ("ankle", "foot")))


def _is_ancestor(skeleton, a, b):
    j = skeleton.parents[b]
    while j >= 0:
        if j == a:
            return True
        j = skeleton.parents[j]
    return False


def _contradicted(skeleton, roles):
    """Roles whose bone is not below the bone of the role before it in its limb (collar > shoulder > elbow ...)."""
    idx = {r: skeleton.names.index(b) for r, b in roles.items()}
    bad = set()
    for a, b in _CHAIN_PAIRS:
        if a in idx and b in idx and not _is_ancestor(skeleton, idx[a], idx[b]):
            bad.update((a, b))
    return bad


def _settle_arms(skeleton, roles, classes):
    """Where the preset left an arm's upper-arm role empty, the upper arm is where the arm's long segment starts:
    the elbow's parent (twist and helper bones skipped). A clavicle match on that same bone moves to the upper arm,
    and the clavicle becomes its parent unless that is a spine bone. Returns the roles it set."""
    set_roles = []
    spine = {roles.get(r) for r in ("pelvis", "spine1", "spine2", "spine3", "neck")}
    for s in ("left", "right"):
        if f"{s}_elbow" not in roles or f"{s}_shoulder" in roles:
            continue
        j = skeleton.parents[skeleton.names.index(roles[f"{s}_elbow"])]
        while j >= 0 and skeleton.names[j] in classes:
            j = skeleton.parents[j]
        if j < 0:
            continue
        upper = skeleton.names[j]
        owner = next((r for r, b in roles.items() if b == upper), None)
        if owner not in (None, f"{s}_collar"):
            continue
        roles[f"{s}_shoulder"] = upper
        set_roles.append(f"{s}_shoulder")
        roles.pop(f"{s}_collar", None)
        p = skeleton.parents[j]
        # the clavicle, unless the upper arm hangs straight from the spine (a chest the map left between its roles)
        on_spine = any(b in skeleton.names and (skeleton.names.index(b) == p or _is_ancestor(skeleton, p, skeleton.names.index(b)))
                       for b in (roles.get("neck"), roles.get("head")) if b)
        if p >= 0 and not on_spine and skeleton.names[p] not in spine and skeleton.names[p] not in roles.values():
            roles[f"{s}_collar"] = skeleton.names[p]
            set_roles.append(f"{s}_collar")
    return set_roles


def _head_bone(skeleton, heads, above):
    """The head among the bones above the neck (above[0]). The chain that reaches highest may run on through hair
    or a hat (VRM's HairBall_Center_End), so the head is the first bone above the neck that branches (eyes, jaw,
    hair); in an unbranched chain, the last bone, unless it is a head-top end (a leaf whose segment from its parent
    is much longer than the neck's segments)."""
    branching = next((j for j in above[1:] if len(skeleton.children[j]) > 1), None)
    if branching is not None:
        return branching
    if len(above) == 2:
        return above[1]
    seg = np.linalg.norm(np.diff(heads[above], axis=0), axis=-1)
    return above[-2] if seg[-1] > 1.5 * seg[:-1].max() else above[-1]


def _candidates(skeleton, role, taken):
    """Unmapped bones whose names mention the role's side and limb, for the report."""
    words = {"pelvis": ["hip", "pelvis", "root"], "head": ["head"], "neck": ["neck"],
             "collar": ["clav", "collar", "shoulder"], "shoulder": ["arm", "shoulder", "shldr"],
             "elbow": ["fore", "lowerarm", "elbow"], "wrist": ["hand", "wrist"], "hip": ["thigh", "upleg", "upperleg", "hip"],
             "knee": ["shin", "calf", "knee", "leg"], "ankle": ["foot", "ankle"], "foot": ["toe", "ball"],
             "spine1": ["spine", "abdomen", "waist"], "spine2": ["spine", "chest"], "spine3": ["spine", "chest"], "root": ["root"]}
    side, _, limb = role.partition("_") if role.startswith(("left_", "right_")) else ("", "", role)
    out = []
    for n in skeleton.names:
        if n in taken:
            continue
        if any(w in n.lower() for w in words.get(limb, [limb])) and (not side or name_side(n) == side):
            out.append(n)
    return out[:6]


def name_side(name):
    """'left', 'right' or None: the side a bone name says it is on. A side is a word (Left, right_), a lone letter
    between separators (thigh.L, L_Arm, hand_r), or a lower-case letter before a capital (lShldr, rThigh)."""
    low = name.lower()
    words = [s for s in ("left", "right") if s in low]
    if len(words) == 1:
        return words[0]
    letter = re.search(r"(?:^|[^A-Za-z])([LlRr])(?:[^A-Za-z]|$)", name) or re.match(r"([lr])[A-Z]", name)
    return None if letter is None else ("left" if letter.group(1) in "Ll" else "right")


def auto_map(skeleton, presets=None):
    """Map roles to bones: best-matching preset, then structure. Returns a Mapping with `.report`."""
    presets = load_presets() if presets is None else presets
    best = None
    for p in presets:
        roles, twist, classes = _apply_preset(skeleton, p)
        # a name can mean different bones in different conventions (LeftShoulder: Mixamo's clavicle, the upper arm
        # in CMU's 3ds Max BVH), so a preset whose matches contradict the hierarchy loses those roles
        roles = {r: b for r, b in roles.items() if r not in _contradicted(skeleton, roles)}
        key = (sum(r in roles for r in REQUIRED_ROLES), len(roles), p.get("priority", 0))
        if best is None or key > best[0]:
            best = (key, p["name"], roles, twist, classes)
    _, name, roles, twist, classes = best
    if best[0][0] == 0:
        name, roles, twist, classes = None, {}, [], {}
    source = {r: "preset" for r in roles}
    for r in _settle_arms(skeleton, roles, classes):
        source[r] = "structure"
    structural, notes = _structural(skeleton, roles)
    taken = set(roles.values())
    for r, j in structural.items():
        n = skeleton.names[j]
        if n not in taken and n not in classes:
            roles[r] = n
            taken.add(n)
            source[r] = "structure"
    roles = {r: roles[r] for r in ROLES if r in roles}
    if _named_for_the_viewer(skeleton, roles):
        roles = {_other_side(r): b for r, b in roles.items()}
        roles = {r: roles[r] for r in ROLES if r in roles}
        source = {_other_side(r): v for r, v in source.items()}
        twist = [dict(t, limb=_other_side(t["limb"])) for t in twist]
        notes["sides"] = ("the bones' left/right names are the viewer's: both feet point the other way from the "
                          "forward they imply, so the character's left is the bones named right")
    missing = [r for r in ROLES if r not in roles and r != "root"]
    report = {
        "preset": name,
        "source": source,
        "missing_required": [r for r in required_roles(skeleton, roles) if r not in roles],
        "missing_optional": [r for r in missing if r not in REQUIRED_ROLES],
        "candidates": {r: _candidates(skeleton, r, taken) for r in missing},
        "notes": notes,
    }
    for r in missing:
        _likely_bones(skeleton, roles, r, report)
    report.update({
        "classes": classes,
    })
    return Mapping(roles, twist, classes, name, report)


def _other_side(role):
    side, _, limb = role.partition("_")
    return {"left": "right_", "right": "left_"}[side] + limb if side in ("left", "right") else role


def _foot_forward(skeleton, roles, side):
    """(3,) ground-plane direction from the ankle to the rest of the foot (the toe bone, the foot's child, else the
    sole of the mesh it deforms), or None where the rig shows none."""
    if f"{side}_ankle" not in roles:
        return None
    heads = skeleton.world_heads
    a = skeleton.names.index(roles[f"{side}_ankle"])
    if roles.get(f"{side}_foot") in skeleton.names:
        d = heads[skeleton.names.index(roles[f"{side}_foot"])] - heads[a]
    elif skeleton.children[a]:
        d = heads[skeleton.children[a]].mean(0) - heads[a]
    elif len(skeleton.mesh_points.get(a, ())):
        d = skeleton.mesh_points[a].mean(0) - heads[a]
    else:
        return None
    d = np.array([d[0], d[1], 0.0])
    n = np.linalg.norm(d)
    return d / n if n > 1e-9 else None


def _named_for_the_viewer(skeleton, roles):
    """Whether the map's left and right are mirrored: both feet point clearly backwards from the forward that the
    mapped hips and shoulders imply (the Godot platformer robot's 'l-thigh' stands on the character's right)."""
    need = ("left_hip", "right_hip", "left_shoulder", "right_shoulder")
    if not all(roles.get(r) in skeleton.names for r in need):
        return False
    h = {r: skeleton.world_heads[skeleton.names.index(roles[r])] for r in need}
    left = h["left_hip"] - h["right_hip"] + h["left_shoulder"] - h["right_shoulder"]
    fwd = np.cross([left[0], left[1], 0.0], [0.0, 0.0, 1.0])
    if np.linalg.norm(fwd) < 1e-9:
        return False
    fwd /= np.linalg.norm(fwd)
    feet = [_foot_forward(skeleton, roles, s) for s in ("left", "right")]
    return all(f is not None and f @ fwd < -0.5 for f in feet)


def _likely_bones(skeleton, roles, role, report):
    """Add the structure's view of a missing limb role to the report: the unmapped bones right below the mapped role
    above it in the limb are its likely bones; where there are none, say where the limb ends."""
    above = next((a for a, b in _CHAIN_PAIRS if b == role), None)
    while above is not None and above not in roles:
        above = next((a for a, b in _CHAIN_PAIRS if b == above), None)
    if above is None:
        return
    taken = set(roles.values())
    kids = [skeleton.names[c] for c in skeleton.children[skeleton.names.index(roles[above])] if skeleton.names[c] not in taken]
    cands = report["candidates"].setdefault(role, [])
    cands[:0] = [k for k in kids if k not in cands]
    if not kids:
        report["notes"].setdefault(role, f"the limb ends at {roles[above]!r} ({above})")


def format_report(mapping):
    """A few human-readable lines about an auto_map result."""
    rep = mapping.report or {}
    lines = [f"preset: {rep.get('preset') or 'none (structure only)'}; {len(mapping.roles)} roles mapped"]
    for r in ROLES:
        if r in mapping.roles:
            lines.append(f"  {r:15s} -> {mapping.roles[r]}  ({rep.get('source', {}).get(r, 'given')})")
    for r in rep.get("missing_required", []):
        lines.append(f"  MISSING required {r}: candidates {rep['candidates'].get(r, [])}"
                     + (f"; {rep['notes'][r]}" if r in rep.get("notes", {}) else ""))
    for r in rep.get("missing_optional", []):
        lines.append(f"  missing optional {r}: candidates {rep['candidates'].get(r, [])}")
    if "sides" in rep.get("notes", {}):
        lines.append(f"  sides: {rep['notes']['sides']}")
    for n, c in sorted(rep.get("classes", {}).items()):
        lines.append(f"  {c:6s} bone {n}")
    return "\n".join(lines)
