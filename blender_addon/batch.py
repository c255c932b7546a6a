"""Headless batch, driving the same operators as the panel:

    python -m blender_addon.batch --blend IN.blend --rig ARMATURE (--prompt TEXT ... | --prompts FILE | --motion FILE ...
        | --timeline FILE | --markers | --continue --prompt TEXT) [--model-dir DIR] [--cleanup-feet] [--reduce-keys [--key-detail fine|coarse|loose]] [--root-motion hips|root|in_place] [--controls fk|ik-legs|ik] [--seconds S] [--seed N]
        [--python PY] [--backend-dir DIR] [--device cpu|cuda|auto] [--preview out.gif|out.mp4 [--preview-width PX]] --out OUT.blend

Run with a Python that has bpy (or `blender -b --python-expr`). One NLA strip per clip on the rig's MotionMill
track, the first at the scene's start frame, at the scene's frame rate with real-time speed. --timeline (one
`SECONDS PROMPT` line per segment) and --markers (IN.blend's timeline markers named with prompts) make one continuous
strip, with pose markers where the segments start; --continue continues the rig's active action into a new action
(the old keys unchanged, then the continuation). IN.blend is never written. Exit status 0 on success, 1 with one line on stderr otherwise.
"""
import argparse
import os
import sys


class BatchError(Exception):
    pass


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m blender_addon.batch", description=__doc__.split("\n\n")[0])
    p.add_argument("--blend", required=True)
    p.add_argument("--rig", required=True, help="the armature object's name")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", action="append")
    src.add_argument("--prompts", help="a text file, one prompt per line")
    src.add_argument("--motion", action="append", help="interchange .npz, AMASS .npz, 272 .npy or .bvh")
    src.add_argument("--timeline", help="a text file, one `SECONDS PROMPT` segment per line: one continuous motion")
    src.add_argument("--markers", action="store_true",
                     help="a timeline from IN.blend's markers named with prompts (the last one runs --seconds, default 4)")
    p.add_argument("--continue", dest="cont", action="store_true",
                   help="continue the rig's active action with --prompt (a new action: its keys, then the continuation)")
    p.add_argument("--model-dir")
    p.add_argument("--cleanup-feet", action="store_true")
    p.add_argument("--reduce-keys", action="store_true",
                   help="editable Bezier keys within 0.5 deg per bone and 1 mm per location of the bake "
                        "(default: a key on every frame, the exact bake)")
    p.add_argument("--key-detail", choices=["fine", "coarse", "loose"], default="fine",
                   help="with --reduce-keys: within 0.5 deg / 1 mm (fine), 2 deg / 2 cm (coarse) or 4 deg / 3 cm (loose)")
    p.add_argument("--root-motion", choices=["hips", "root", "in_place"], default="hips")
    p.add_argument("--controls", choices=["fk", "ik-legs", "ik"], default="ik-legs",
                   help="on a control rig (Rigify): limbs keyed on FK controls, legs on IK (default), or all IK")
    p.add_argument("--seconds", type=float, help="exact clip length (up to 10 s); default: auto, the model decides")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--blend-in", type=float, default=0.0)
    p.add_argument("--blend-out", type=float, default=0.0)
    p.add_argument("--python", "--backend-python", dest="python", help="the backend's Python (default: the repo's .venv)")
    p.add_argument("--backend-dir", help="the folder holding backend/ (default: this checkout)")
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                   help="compiled decoding in the backend (auto: on a CUDA GPU)")
    p.add_argument("--preview", help="a quick Workbench playblast: out.gif or out.mp4")
    p.add_argument("--preview-width", type=int, default=480, help="the preview's width in pixels (height: 3/4 of it)")
    p.add_argument("--out", required=True)
    return p.parse_args(argv)


def _read_text(path, what):
    """A text file's contents, read as the CLI reads it: UTF-8 with or without a byte-order mark, else one line."""
    import importlib
    from . import _rt
    continuation = importlib.import_module(_rt._name + ".continuation")
    try:
        return "\n".join(continuation.read_text_lines(path, what))
    except OSError as err:
        raise BatchError(f"cannot read {what} {path}: {err.strerror}") from None
    except continuation.MotionError as err:
        raise BatchError(str(err)) from None


def _check_paths(a):
    if not os.path.isfile(a.blend):
        raise BatchError(f"--blend {a.blend}: no such file")
    with open(a.blend, "rb") as f:
        magic = f.read(7)
    # a .blend starts with "BLENDER", or is gzip / zstd compressed
    if not (magic == b"BLENDER" or magic[:2] == b"\x1f\x8b" or magic[:4] == b"\x28\xb5\x2f\xfd"):
        raise BatchError(f"--blend {a.blend}: not a .blend file")
    out = os.path.abspath(a.out)
    if out == os.path.abspath(a.blend) or (os.path.exists(out) and os.path.samefile(out, a.blend)):
        raise BatchError(f"--out {a.out} is the input file: refusing to overwrite IN.blend; choose another --out")
    if os.path.isdir(out):
        raise BatchError(f"--out {a.out} is a folder; name the .blend file to write, e.g. {os.path.join(a.out, 'out.blend')}")
    if not os.path.isdir(os.path.dirname(out)):
        raise BatchError(f"--out {a.out}: folder {os.path.dirname(out)} does not exist")
    _check_writable(out)
    for m in a.motion or ():
        if not os.path.isfile(m):
            raise BatchError(f"--motion {m}: no such file")
    if a.prompts and not os.path.isfile(a.prompts):
        raise BatchError(f"--prompts {a.prompts}: no such file")
    if a.timeline and not os.path.isfile(a.timeline):
        raise BatchError(f"--timeline {a.timeline}: no such file")
    a.timeline_text = _read_text(a.timeline, "timeline") if a.timeline else None
    a.prompts_text = _read_text(a.prompts, "prompts file") if a.prompts else None
    if a.cont and (not a.prompt or len(a.prompt) != 1):
        raise BatchError("--continue takes one --prompt: what the character does next")
    if a.preview:              # before any work: a bad extension or folder fails in a second, not after generating
        ext = os.path.splitext(a.preview)[1].lower()
        if ext not in (".gif", ".mp4"):
            raise BatchError(f"--preview {a.preview}: unknown extension {ext or '(none)'!r}; use .gif or .mp4")
        if not os.path.isdir(os.path.dirname(os.path.abspath(a.preview))):
            raise BatchError(f"--preview {a.preview}: folder {os.path.dirname(os.path.abspath(a.preview))} does not exist")


def _check_writable(path):
    """Before any work: an --out that cannot be written fails now, not after generating."""
    probe = os.path.join(os.path.dirname(path), f".motionmill-write-test-{os.getpid()}")
    try:
        with open(probe, "wb"):
            pass
        os.remove(probe)
        if os.path.exists(path) and not os.access(path, os.W_OK):
            raise PermissionError(13, "permission denied")
    except OSError as err:
        raise BatchError(f"--out {path}: cannot write there ({err.strerror or err})") from None


def _check_humanoid(obj):
    """Before generating anything: a rig the retarget cannot map would waste the whole generation."""
    from . import rig
    from ._rt import skeleton
    try:
        skel = rig.skeleton_from_object(obj)
        rig.check_keyable(obj, rig.mapping_for(obj, skel).validate(skel))   # the retarget's own checks, before generating
    except skeleton.SkeletonError as err:
        raise BatchError(f"--rig {obj.name}: {err}") from None


def _ops_error(fn, **kw):
    try:
        result = fn(**kw)
    except RuntimeError as err:
        raise BatchError(str(err).replace("Error: ", "").strip().splitlines()[0]) from None
    if "FINISHED" not in result:
        raise BatchError(f"{fn.idname_py()} was cancelled")


def _keys_line(action):
    """How many keys an action holds and, reduced, the worst error they reached against the bake."""
    line = f"{action.get('motionmill_keys', 0)} keys"
    if "motionmill_key_error_deg" in action:
        line += (f", within {action['motionmill_key_error_deg']:.2f} deg and "
                 f"{100 * action['motionmill_key_error_m']:.2f} cm of the bake")
    return line


def _long(a, scene, obj):
    """--timeline FILE, --markers or --continue: the panel's Timeline and Continue operators."""
    import bpy
    s = scene.motionmill
    if a.cont:
        ad = obj.animation_data
        track = ad.nla_tracks.get("MotionMill") if ad is not None else None
        if (ad is None or ad.action is None) and track is not None and len(track.strips):
            # a file an earlier batch wrote (its clips are NLA strips): continue the last strip's action
            from . import compat
            last = max(track.strips, key=lambda st: st.frame_end)
            compat.assign_action(obj, last.action, compat.ensure_slot(last.action, obj))
            print(f"--continue: '{obj.name}' has no active action; continuing its last MotionMill strip "
                  f"'{last.name}' (action '{last.action.name}')")
        if obj.animation_data is None or obj.animation_data.action is None:
            raise BatchError(f"--continue: '{obj.name}' has no active action or MotionMill strip in {a.blend}")
        s.prompt = a.prompt[0]
        _ops_error(bpy.ops.motionmill.continue_action)
        return
    if a.markers:
        _ops_error(bpy.ops.motionmill.generate_timeline, source="MARKERS")
        return
    text = bpy.data.texts.new("motionmill_batch_timeline")
    text.from_string(a.timeline_text)
    s.prompt_text = text
    try:
        _ops_error(bpy.ops.motionmill.generate_timeline, source="TEXT")
    finally:
        s.prompt_text = None
        bpy.data.texts.remove(text)


def run(a):
    _check_paths(a)
    import bpy
    from . import paths, props, register, unregister
    register()
    try:
        try:
            bpy.ops.wm.open_mainfile(filepath=os.path.abspath(a.blend), load_ui=False)
        except RuntimeError as err:
            raise BatchError(f"--blend {a.blend}: Blender cannot open it ({str(err).strip().splitlines()[-1]})") from None
        scene = bpy.context.scene
        obj = bpy.data.objects.get(a.rig)
        if obj is None:
            arms = [o.name for o in bpy.data.objects if o.type == "ARMATURE"]
            raise BatchError(f"--rig {a.rig}: no such object in {a.blend} (armatures: {', '.join(arms) or 'none'})")
        if obj.type != "ARMATURE":
            raise BatchError(f"--rig {a.rig} is a {obj.type.lower()}, not an armature")
        _check_humanoid(obj)
        from .rig import rig_report
        print(f"rig '{obj.name}': {rig_report(obj, a.controls)}")
        s = scene.motionmill
        s.target = obj
        s.cleanup_feet, s.root_motion, s.controls = a.cleanup_feet, a.root_motion, a.controls
        s.reduce_keys = a.reduce_keys      # the panel defaults to on; pipelines get the exact bake unless asked
        s.key_detail = a.key_detail
        s.placement, s.blend_in, s.blend_out = "NLA", a.blend_in, a.blend_out
        s.auto_length = a.seconds is None
        if a.seconds is not None:
            s.seconds = a.seconds
        s.seed, s.temperature = a.seed, a.temperature
        scene.frame_current = scene.frame_start
        for o in bpy.context.view_layer.objects:
            o.select_set(False)
        bpy.context.view_layer.objects.active = obj
        if a.motion:
            for m in a.motion:
                _ops_error(bpy.ops.motionmill.import_motion, filepath=os.path.abspath(m), placement="NLA")
                scene.frame_current = int(obj.animation_data.nla_tracks["MotionMill"].strips[-1].frame_end) + 1
        else:
            py, root, model = paths.default_backend()
            props.Prefs.overrides = dict(backend_python=a.python or py or sys.executable, backend_dir=a.backend_dir or root,
                                         model_dir=a.model_dir or model, device=a.device, compile=a.compile)
            if a.timeline or a.markers or a.cont:
                _long(a, scene, obj)
            else:
                text = bpy.data.texts.new("motionmill_batch_prompts")
                if a.prompts:
                    text.from_string(a.prompts_text)
                else:
                    text.from_string("\n".join(a.prompt))
                s.prompt_text = text
                try:
                    _ops_error(bpy.ops.motionmill.generate_batch)
                finally:
                    s.prompt_text = None
                    bpy.data.texts.remove(text)
        track = obj.animation_data.nla_tracks.get("MotionMill")
        strips = list(track.strips) if track is not None and not a.cont else []
        action = obj.animation_data.action
        first, last = ((int(strips[0].frame_start), int(strips[-1].frame_end)) if strips
                       else tuple(int(f) for f in action.frame_range))
        scene.frame_current = scene.frame_start
        try:
            bpy.ops.wm.save_as_mainfile(filepath=os.path.abspath(a.out), copy=True)
        except RuntimeError as err:
            raise BatchError(f"--out {a.out}: Blender cannot write it ({str(err).strip().splitlines()[-1]})") from None
        if a.preview:          # after saving: OUT.blend never sees the preview's temporary camera/ground/figure
            from .preview import PreviewError, render_preview
            try:
                render_preview(scene, obj, a.preview, first, last,
                               resolution=(a.preview_width, a.preview_width * 3 // 4))
            except PreviewError as err:
                raise BatchError(str(err)) from None
        for st in strips:
            print(f"{st.name}\t{int(st.frame_start)}-{int(st.frame_end)}\t{st.action.name}\t{_keys_line(st.action)}")
            for note in str(st.action.get("motionmill_notes", "")).splitlines():
                print(f"warning: {st.name}: {note}")
        if a.cont:
            print(f"{action.name}\t{first}-{last}\tcontinues '{action['motionmill_continued_from']}' from frame "
                  f"{action['motionmill_continue_frame']}")
            print(f"wrote {a.out}: action '{action.name}' on '{obj.name}'")
        else:
            print(f"wrote {a.out}: {len(strips)} strip(s) on '{obj.name}'")
        if a.preview:
            print(f"wrote {a.preview}")
    finally:
        # unregister() also closes the backend session. It is needed, not tidiness: the bpy 4.5 module hangs at
        # interpreter exit while Python-defined classes registered outside addon_utils are still registered
        # (bpy.utils._on_exit disables add-ons, not these); bpy 5.0 exits either way. bpy 4.2 segfaulted at exit
        # whatever unregister did while the add-on had a PointerProperty poll callback: props.py leaves it out there.
        unregister()


def main(argv=None):
    a = parse(argv if argv is not None else sys.argv[1:])
    try:
        run(a)
    except BatchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
