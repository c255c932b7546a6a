"""NLA strips: push a clip's action onto a track, clips laid one after another."""
from . import compat

TRACK_NAME = "MotionMill"


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
    strip = track.strips.new(name[:63] or "MotionMill", int(round(start)), action)
    compat.set_strip_slot(strip, slot)
    length = strip.frame_end - strip.frame_start
    strip.blend_in = min(float(blend_in), length / 2)
    strip.blend_out = min(float(blend_out), length / 2)
    return strip
