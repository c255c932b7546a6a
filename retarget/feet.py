"""Foot-sliding cleanup on the TARGET body, after retargeting.

Public API
----------
``FootParams``: thresholds and windows (defaults for a ~0.85 m leg; speeds and heights scale with the
    target's leg length): contact enter/exit height and ground speed (hysteresis), smoothing window,
    blend length, minimum contact length, pelvis lowering on/off, toe (ball) contacts on/off, step splitting, floor.
``cleanup_feet(anim, target, mapping, params=None) -> TargetAnimation``
``detect_contacts(points, fps, floor, clearances, params, scale=1.0) -> (T, P) bool``

Method. Foot points (ankle = foot-bone head, ball = toe-bone head) get contacts from smoothed ground speed and
height above the floor with hysteresis (enter below the low thresholds, leave above the high ones); short contacts
are dropped, and a stretch of a contact that travels `min_step` or more at speed_on or faster is cut out as a step
(hysteresis alone would pin a shuffling foot at its mean while it travels).

A contact run holds the point's ground-plane position at its mean over the run, blended in and out over `blend`
frames with 2u^3 - 3u^2 + 1. Heights are not pinned: each point keeps its own height, raised to the floor where it
would be below it. A planted foot's points sit off their rest heights (a heel rolling up over the ball; a rig whose
foot is shaped unlike the source's), and pulling them down to the rest clearance bent legs and feet by 8-15 degrees.

The foot moves as one rigid body: it keeps its pitch and roll, shifts over the ground by its points' pin-weighted
corrections, and turns about the vertical only to hold its heading while heel and ball are both planted (see
_foot_move). Pinning the two points separately pitched the foot to fit two pins taken over different frames.

The cleanup only removes what the source lacks (sliding, a foot through the floor); it never lifts a swinging foot
higher than the retarget put it, which is the source's own clearance scaled to the leg. (An added step lift of up to
12 cm bent legs 13-17 degrees at p95 on real characters.) The pelvis is lowered where a leg cannot reach its pinned
ankle; a two-bone analytic IK per leg (knee kept in its bend plane) places thigh and shin. Everything is vectorised
over frames.
"""
from dataclasses import dataclass, replace

import numpy as np

from .filters import moving_average, moving_max
from .mapping import _is_ancestor
from .rotations import matrix_to_quaternion, normalize, quaternion_to_matrix, rotation_between
from .transfer import UP, _mul, continuous_quaternions, body_carrier, _mv, _rot_about, _role_index, fk_positions, foot_points, leg_length, local_from_world, pose_world

REFERENCE_LEG = 0.85  # metres; thresholds below are for a leg this long


@dataclass
class FootParams:
    height_on: float = 0.05      # m above the floor (minus rest clearance) to start a contact
    height_off: float = 0.08     # m to end it
    speed_on: float = 1.0        # m/s ground speed (smoothed) to start a contact
    speed_off: float = 2.0       # m/s to end it
    smooth: int = 5              # frames, moving-average window for speeds and for the pelvis drop
    blend: int = 6               # frames to blend a pin in and out
    min_contact: int = 3         # frames; shorter contacts are ignored
    lower_pelvis: bool = True
    toe: bool = True             # pin the ball of the foot (toe-bone head) too
    min_step: float = 0.04       # m; a stretch of a contact faster than speed_on that travels this far is a step (0: off)
    floor: float = None          # world z of the floor; default the rig's rest floor
    hold_flat: bool = False      # heel and ball both down: hold the whole foot's pose (IK foot controls get flat keys)


def _hysteresis(on, stay):
    """state[t] = on[t] or (state[t-1] and stay[t]); vectorised along axis 0."""
    T = on.shape[0]
    event = np.where(on, 1, np.where(stay, 0, -1))
    idx = np.where(event != 0, np.arange(T)[:, None], -1)
    last = np.maximum.accumulate(idx, axis=0)
    state = np.take_along_axis(event, np.maximum(last, 0), 0) == 1
    return state & (last >= 0)


def _runs(mask):
    """Start and end (exclusive) of True runs in a 1-D bool array."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def detect_contacts(points, fps, floor, clearances, params, scale=1.0):
    h = points[..., 2] - floor - np.asarray(clearances)
    v = np.zeros(points.shape[:2])
    if len(points) > 1:
        step = np.linalg.norm(np.diff(points[..., :2], axis=0), axis=-1) * fps
        v[1:] = step
        v[0] = step[0]
    v = moving_average(v, params.smooth)
    on = (h < params.height_on * scale) & (v < params.speed_on * scale)
    stay = (h < params.height_off * scale) & (v < params.speed_off * scale)
    c = _hysteresis(on, stay)
    if params.min_step:
        c &= ~_moving_stretches(points, c, v >= params.speed_on * scale, params.min_step * scale, params.min_contact)
    for p in range(c.shape[1]):
        s, e = _runs(c[:, p])
        for a, b in zip(s, e):
            if b - a < params.min_contact:
                c[a:b, p] = False
    return c


def _moving_stretches(points, contact, fast, min_step, min_len):
    """(T, P) bool: stretches inside contacts, min_len frames or longer, where the point moves faster than speed_on
    and travels min_step or more.

    Hysteresis keeps a contact through the band between speed_on and speed_off, so a shuffling foot that never
    quite lifts or speeds up stays in one long contact and gets pinned at its mean while it travels. Such a
    stretch is a step; cutting it out leaves a plant on either side. A foot that drifts slowly (below speed_on)
    is left in its contact.
    """
    out = np.zeros(contact.shape, bool)
    band = contact & fast
    for p in range(contact.shape[1]):
        s, e = _runs(band[:, p])
        for a, b in zip(s, e):
            a0, b0 = max(a - 1, 0), min(b, len(points) - 1)
            if b - a >= min_len and np.linalg.norm(points[b0, p, :2] - points[a0, p, :2]) >= min_step:
                out[a:b, p] = True
    return out


def _fall(u):
    u = np.clip(u, 0.0, 1.0)
    return 2 * u ** 3 - 3 * u ** 2 + 1


def _hold(values, contact, blend):
    """Held values and hold weights (T,P,D), (T,P): each contact run of `values` (T,P,D) held at its mean.

    Outside a run, a value keeps its own course plus the offset it had at the neighbouring run's edge, fading out
    over `blend` frames (2u^3-3u^2+1); a gap shorter than two blends hands the offset of one run over to the next's
    across the whole gap, so nothing snaps between close holds.
    """
    T, P = contact.shape
    target = values.copy()
    weight = np.zeros((T, P))
    csum = np.concatenate([np.zeros((1,) + values.shape[1:]), np.cumsum(values, 0)])
    blend = max(int(blend), 1)
    for p in range(P):
        s, e = _runs(contact[:, p])
        if not len(s):
            continue
        mean = (csum[e, p] - csum[s, p]) / (e - s)[:, None]
        off_start = mean - values[s, p]
        off_end = mean - values[e - 1, p]
        for i in range(len(s)):
            target[s[i]:e[i], p] = mean[i]
            weight[s[i]:e[i], p] = 1.0
            # gap after run i (to the next run, or to the end of the clip)
            g_end = s[i + 1] if i + 1 < len(s) else T
            t = np.arange(e[i], g_end)
            if len(t):
                bridged = i + 1 < len(s) and (g_end - e[i]) + 1 <= 2 * blend
                L = (g_end - e[i]) + 1 if bridged else blend
                w = _fall((t - (e[i] - 1)) / L)
                target[t, p] += w[:, None] * off_end[i]
                weight[t, p] += w
            # gap before run i (from the previous run, or from the start of the clip)
            g_start = e[i - 1] if i > 0 else 0
            t = np.arange(g_start, s[i])
            if len(t):
                bridged = i > 0 and (s[i] - g_start) + 1 <= 2 * blend
                L = (s[i] - g_start) + 1 if bridged else blend
                w = _fall((s[i] - t) / L)
                target[t, p] += w[:, None] * off_start[i]
                weight[t, p] += w
        np.minimum(weight[:, p], 1.0, out=weight[:, p])
    return target, weight


def _pins(points, contact, floor, clearances, blend):
    """Pinned targets and pin weights (T,P,3), (T,P).

    A contact run holds the point's ground-plane position at its mean over the run (see _hold); its height stays
    its own. The height a foot point has while planted is not its rest clearance: a heel rises as the foot rolls
    onto its ball, and a foot whose rest pose is shaped unlike the source's (other toe pitch, other ankle height)
    stands with its points a few centimetres off their rest heights. Pulling every contact down to its rest
    clearance bent the legs and pitched the feet by 8-15 degrees on a real capture. Only a point below the floor is
    raised onto it, planted or not.
    """
    target, weight = _hold(points[..., :2], contact, blend)
    height = np.maximum(points[..., 2], floor + np.asarray(clearances))
    return np.concatenate([target, height[..., None]], -1), weight


def _foot_move(ankle, ankle_pin, ankle_w, ball, ball_pin, ball_w, heading_turn):
    """Where the ankle goes (T,3) when the foot, one rigid body, is turned about the vertical by `heading_turn` (T,)
    and shifted so that its planted points land on their pins.

    The ankle and the ball lie on one foot, but each gets its own pin (the mean of its own contact run), and while the
    foot rolls (the heel rising over the ball, the toe lowering after heel strike) the runs overlap: pinning each
    point on its own would turn the foot to fit both pins, pitching it to a direction the source never had and the
    toe tip through the floor. So the foot keeps its pitch and roll; it turns only about the vertical (its heading
    held while both points are planted, see cleanup_feet) and shifts over the ground by the pin-weighted mean of
    its points' corrections. Upwards it moves as far as either point needs to stay on the floor.
    """
    tot = np.maximum(ankle_w + ball_w, 1e-9)[:, None]
    centre = (ankle_w[:, None] * ankle + ball_w[:, None] * ball) / tot
    Q = _rot_about(UP, heading_turn)
    a_r = centre + _mv(Q, ankle - centre)
    b_r = centre + _mv(Q, ball - centre)
    shift = (ankle_w[:, None] * (ankle_pin - a_r) + ball_w[:, None] * (ball_pin - b_r)) / tot
    out = a_r + shift
    out[:, 2] = ankle[:, 2] + np.maximum(ankle_pin[:, 2] - ankle[:, 2], ball_pin[:, 2] - ball[:, 2])
    return out


def _heading_turns(cps, contact, k_ankle, k_ball, blend):
    """(T,) turn about the vertical that holds the foot's heading (ankle -> ball over the ground) at its mean while
    both of its points are planted, faded in and out as the pins are: a planted foot twisting on the floor slides
    too (the ball sweeps round the heel), and that is what the two points' own means cannot tell apart from
    rolling."""
    d = cps[:, k_ball, :2] - cps[:, k_ankle, :2]
    d = d / np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-9)
    both = contact[:, k_ankle] & contact[:, k_ball]
    held, weight = _hold(d[:, None], both[:, None], blend)
    h = held[:, 0]
    turn = np.arctan2(d[:, 0] * h[:, 1] - d[:, 1] * h[:, 0], np.sum(d * h, -1))
    return turn * (np.linalg.norm(h, axis=-1) > 1e-6)


def _held_rotation(R, on, blend):
    """(T,3,3) rotations R held at their mean over each run of `on` (T,), faded in and out as _hold fades."""
    q = continuous_quaternions(matrix_to_quaternion(R))
    held = _hold(q[:, None], on[:, None], blend)[0][:, 0]
    return quaternion_to_matrix(normalize(held))


def _foot_contacts(X, target, tr, params, fps):
    """Per side whether it has a toe point, then the contact points (T,P,3) (each side's ankle = foot head, then its
    ball = toe head), their rest clearances (P,), the floor and the contacts (T,P) bool."""
    pts, rest_floor = foot_points(target, tr)
    floor = rest_floor if params.floor is None else params.floor
    scale = leg_length(target.world_heads, tr) / REFERENCE_LEG
    has_toe = {s: f"{s}_foot" in tr and params.toe for s in ("left", "right")}
    cps, clr = [], []
    for s in ("left", "right"):
        cps.append(X[:, tr[f"{s}_ankle"]])
        clr.append(pts[s][0][2])
        if has_toe[s]:
            cps.append(X[:, tr[f"{s}_foot"]])
            clr.append(pts[s][1][2])
    cps, clr = np.stack(cps, 1), np.array(clr)
    return has_toe, cps, clr, floor, detect_contacts(cps, fps, floor, clr, params, scale)


def planted_stretches(anim, target, mapping, params=None):
    """{side: [(first, last)]} the frame runs in which cleanup_feet holds the whole foot still: heel and ball both
    planted (sides with a toe bone)."""
    params = params or FootParams()
    tr = _role_index(target, mapping)
    has_toe, _, _, _, contact = _foot_contacts(pose_world(anim, target)[1], target, tr, params, anim.fps)
    out, k = {}, 0
    for s in ("left", "right"):
        if has_toe[s]:
            starts, ends = _runs(contact[:, k] & contact[:, k + 1])
            out[s] = [(int(a), int(b) - 1) for a, b in zip(starts, ends)]
        k += 2 if has_toe[s] else 1
    return out


def _chain(skel, top, bottom):
    """Bones from top (inclusive) down to bottom (exclusive) along the parent path."""
    path, j = [], skel.parents[bottom]
    while j >= 0 and j != top:
        path.append(j)
        j = skel.parents[j]
    if j != top:
        raise ValueError(f"{skel.names[bottom]!r} is not below {skel.names[top]!r}")
    return [top] + path[::-1]


def cleanup_feet(anim, target, mapping, params=None):
    """Remove foot sliding from a TargetAnimation on `target`; returns a new TargetAnimation."""
    params = params or FootParams()
    tr = _role_index(target, mapping)
    R, X = pose_world(anim, target)
    G = target.world_rest_rotations
    E = _mul(R, np.swapaxes(G, -1, -2))
    T, B = X.shape[:2]
    Ht = target.world_heads
    sides = ("left", "right")
    has_toe, cps, clr, floor, contact = _foot_contacts(X, target, tr, params, anim.fps)
    pinned, w = _pins(cps, contact, floor, clr, params.blend)
    k = 0
    ank_t, foot_turn = {}, {}
    for s in sides:
        if has_toe[s]:
            yaw = _heading_turns(cps, contact, k, k + 1, params.blend)
            ank_t[s] = _foot_move(cps[:, k], pinned[:, k], w[:, k], cps[:, k + 1], pinned[:, k + 1], w[:, k + 1], yaw)
            # heel and ball both down: the whole foot holds one pose (a flat key on an IK foot control). Off, the foot
            # keeps the source's roll and pitch while planted, which the limbs' directions follow more closely.
            flat = contact[:, k] & contact[:, k + 1] & params.hold_flat
            ank_t[s] = _hold(ank_t[s][:, None], flat[:, None], params.blend)[0][:, 0]
            turned = _mul(_rot_about(UP, yaw), E[:, tr[f"{s}_ankle"]])
            foot_turn[s] = _mul(_held_rotation(turned, flat, params.blend), np.swapaxes(E[:, tr[f"{s}_ankle"]], -1, -2))
            k += 2
        else:
            ank_t[s], foot_turn[s] = pinned[:, k], np.broadcast_to(np.eye(3), (T, 3, 3))
            k += 1
    # pelvis lowering where a leg cannot reach its ankle target
    drop = np.zeros(T)
    lens = {}
    for s in sides:
        hip, knee, ank = tr[f"{s}_hip"], tr[f"{s}_knee"], tr[f"{s}_ankle"]
        l1 = np.linalg.norm(Ht[knee] - Ht[hip])
        l2 = np.linalg.norm(Ht[ank] - Ht[knee])
        lens[s] = (l1, l2)
        if params.lower_pelvis:
            reach = (l1 + l2) * 0.995
            dv = ank_t[s] - X[:, hip]
            rh2 = np.sum(dv[:, :2] ** 2, -1)
            need = -np.sqrt(np.maximum(reach ** 2 - rh2, 0)) - dv[:, 2]
            drop = np.maximum(drop, need)
    drop = np.maximum(drop, 0)
    if params.lower_pelvis and drop.any():
        drop = moving_average(moving_max(drop, params.smooth), params.smooth)
    shift = -drop[:, None] * UP
    # leg IK: world corrections Qc per bone
    Qc = np.broadcast_to(np.eye(3), (T, B, 3, 3)).copy()
    special = {}
    for s in sides:
        hip, knee, ank = tr[f"{s}_hip"], tr[f"{s}_knee"], tr[f"{s}_ankle"]
        l1, l2 = lens[s]
        H = X[:, hip] + shift
        K = X[:, knee] + shift
        A = X[:, ank] + shift
        At = ank_t[s]
        dvec = At - H
        dist = np.linalg.norm(dvec, axis=-1)
        u = dvec / np.maximum(dist, 1e-9)[:, None]
        d = np.clip(dist, abs(l1 - l2) + 1e-6, l1 + l2 - 1e-6)
        u_old = normalize(A - H)
        n = (K - H) - np.sum((K - H) * u_old, -1, keepdims=True) * u_old
        fb = _mv(E[:, hip], normalize((Ht[knee] - Ht[hip]) - ((Ht[knee] - Ht[hip]) @ normalize(Ht[ank] - Ht[hip])) * normalize(Ht[ank] - Ht[hip]) + 1e-6 * np.cross(UP, normalize(Ht[ank] - Ht[hip]))))
        small = np.linalg.norm(n, axis=-1) < 1e-4 * l1
        n = np.where(small[:, None], fb, n)
        n = normalize(n - np.sum(n * u, -1, keepdims=True) * u)
        a = (l1 ** 2 - l2 ** 2 + d ** 2) / (2 * d)
        hgt = np.sqrt(np.maximum(l1 ** 2 - a ** 2, 0))
        Kn = H + a[:, None] * u + hgt[:, None] * n
        An = H + d[:, None] * u
        Q1 = rotation_between(K - H, Kn - H)
        Q2 = _mul(rotation_between(_mv(Q1, A - K), An - Kn), Q1)
        for b in _chain(target, hip, knee):
            special[b] = Q1
        for b in _chain(target, knee, ank):
            special[b] = Q2
        special[ank] = foot_turn[s]
    for b, p in enumerate(target.parents):
        if b in special:
            Qc[:, b] = special[b]
        elif p >= 0:
            Qc[:, b] = Qc[:, p]
    E2 = _mul(Qc, E)
    translated = {target.names.index(n) for n in anim.translated}
    carrier = body_carrier(target, tr)
    fixed = {b: X[:, b] + (shift if b == carrier or _is_ancestor(target, carrier, b) else 0.0) for b in translated}
    X2 = fk_positions(target, E2, fixed)
    q, loc = local_from_world(target, E2, X2, translated)
    return replace(anim, quaternions=q, locations=loc)
