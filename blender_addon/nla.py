"""NLA strips: push a clip's action onto a track, clips laid one after another."""
from . import compat

TRACK_NAME = "MotionMill"


# What a strip carries besides its action and place, copied when a track is rebuilt (NlaTracks has no move).
_STRIP_SETTINGS = ("action_frame_start", "action_frame_end", "frame_start", "frame_end", "scale", "repeat",
                   "blend_in", "blend_out", "blend_type", "extrapolation", "influence", "use_animated_influence",
                   "use_auto_blend", "use_reverse", "use_sync_length", "mute")


def _rebuild_above(ad, old, prev):
    """A copy of track `old` (name, strips and their settings) added just after `prev`; `old` is removed."""
    new = ad.nla_tracks.new(prev=prev)
    names = []
    for strip in old.strips:
        copy = new.strips.new(strip.name, int(strip.frame_start), strip.action)
        names.append(strip.name)
        compat.set_strip_slot(copy, getattr(strip, "action_slot", None))
        for attr in _STRIP_SETTINGS:
            if hasattr(strip, attr):
                setattr(copy, attr, getattr(strip, attr))
    name, mute, lock = old.name, old.mute, old.lock
    ad.nla_tracks.remove(old)
    new.name, new.mute, new.lock = name, mute, lock
    for copy, strip_name in zip(new.strips, names):   # the copies got '.001' beside the originals: their names back
        copy.name = strip_name
    return new


def push_down_active_action(obj, below=TRACK_NAME):
    """Move the object's active action, unchanged, onto an NLA track of its own (named after it) below the
    `below` track, as Blender's Push Down does, so that strips placed there play instead of being covered by the
    active action (which would hold its last pose over them). The strip holds its last frame forward: Blender resets
    a channel that no strip covers to its default, so with no hold a character whose action animates its object
    (an FBX import bakes the armature's 0.01 scale into every take) jumped to scale 1 where its take ended under a
    longer clip. Channels the strips above key are theirs either way. Returns the new track, or None when there
    was no active action."""
    ad = obj.animation_data
    if ad is None or ad.action is None:
        return None
    action, slot = ad.action, getattr(ad, "action_slot", None)
    tracks = list(ad.nla_tracks)
    ours = ad.nla_tracks.get(below)
    index = tracks.index(ours) if ours is not None else len(tracks)
    # NlaTracks.new only adds after a track: below ours means after the one under it, or ours is rebuilt on top
    track = ad.nla_tracks.new(prev=tracks[index - 1] if index > 0 else (tracks[-1] if tracks else None))
    if ours is not None and index == 0:
        _rebuild_above(ad, ours, track)
    track.name = action.name[:63]
    # strip names are unique per rig: where a clip's strip has the action's name (its prompt), the clip keeps it
    ours = ad.nla_tracks.get(below)
    taken = ours is not None and any(s.name == action.name[:63] for s in ours.strips)
    strip = track.strips.new(held_name(action.name) if taken else action.name[:63], int(action.frame_range[0]), action)
    compat.set_strip_slot(strip, slot)
    strip.extrapolation = "HOLD_FORWARD"
    ad.action = None
    ours = ad.nla_tracks.get(below)
    if ours is not None and len(ours.strips) and ours.strips[0].extrapolation == "HOLD":
        ours.strips[0].extrapolation = "HOLD_FORWARD"  # a track's first strip holds backwards too: over the action
    return track


def held_name(name):
    """The name of the strip holding the animator's pushed-down action where a clip's strip has its action's name."""
    return f"{name[:56]} (held)"


def track_for(obj, name=TRACK_NAME):
    ad = obj.animation_data or obj.animation_data_create()
    tr = ad.nla_tracks.get(name)
    if tr is None:
        tr = ad.nla_tracks.new()
        tr.name = name
    return tr


def next_free_frame(track, default):
    """The frame after the track's last strip (each strip's last key gets its own frame), or `default`."""
    ends = [s.frame_end for s in track.strips]
    return max(ends) + 1 if ends else default


def push_strip(obj, action, slot, start, name, blend_in=0.0, blend_out=0.0, track_name=TRACK_NAME):
    """Add `action` as a strip starting at `start` (or after the track's last strip if that overlaps)."""
    track = track_for(obj, track_name)
    start = max(float(start), next_free_frame(track, float(start)))
    want = name[:63] or "MotionMill"
    strip = track.strips.new(want, int(round(start)), action)
    if strip.name != want:
        # strip names are unique per rig, and Blender gave this one a suffix: where the name is taken by the
        # animator's action held below (push_down_active_action names its strip after the action, often the same
        # prompt), that strip yields it, so the clip's strip keeps its prompt's name
        held = next((s for t in obj.animation_data.nla_tracks if t != track for s in t.strips if s.name == want), None)
        if held is not None:
            held.name = held_name(want)
            strip.name = want
    compat.set_strip_slot(strip, slot)
    length = strip.frame_end - strip.frame_start
    strip.blend_in = min(float(blend_in), length / 2)
    strip.blend_out = min(float(blend_out), length / 2)
    return strip
