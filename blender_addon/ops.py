"""Operators (motionmill.*). Thin: validation and reporting here, the work in apply/keying/nla/session/smpl_rig."""
import os

import bpy
from bpy.props import EnumProperty, IntProperty, StringProperty

from . import apply, nla, paths, session as sess
from ._rt import MotionError, SkeletonError
from .props import get_prefs

WAIT_S = 900.0   # background mode: longest wait for one request


def settings(context):
    return context.scene.motionmill


def target_armature(context):
    """(object, None) or (None, one-line error)."""
    s = settings(context)
    obj = s.target or context.active_object
    if obj is None:
        return None, "no armature selected: pick a target armature in the MotionMill panel or select one"
    if obj.type != "ARMATURE":
        return None, f"'{obj.name}' is a {obj.type.lower()}, not an armature: pick an armature as the target"
    return obj, None


def prompt_lines(s):
    if s.prompt.strip():
        return [s.prompt.strip()]
    if s.prompt_text is not None:
        text = " ".join(s.prompt_text.as_string().split())
        return [text] if text else []
    return []


def ensure_backend(context):
    p = get_prefs(context)
    quant = "" if p.quant == "nf4" else p.quant   # nf4 is the backend's default on CUDA (none on CPU)
    return sess.SESSION.ensure(bpy.path.abspath(p.backend_python), bpy.path.abspath(p.backend_dir),
                               bpy.path.abspath(p.model_dir), p.device, quant, p.idle_minutes,
                               getattr(p, "compile", "auto"))


def _runtime(context):
    return context.window_manager.motionmill


def _redraw(context, viewport=False):
    """Redraw the MotionMill sidebar (the progress bar) of every 3D View; with viewport=True the whole 3D View
    (the rig's pose changed). The progress alone must not redraw the viewport: in a heavy scene, or with software
    OpenGL, that is the costly part of a redraw, and it would be paid on every timer tick of a generation."""
    for window in getattr(context.window_manager, "windows", ()):
        for area in window.screen.areas:
            if area.type != "VIEW_3D":
                continue
            if viewport:
                area.tag_redraw()
                continue
            for region in area.regions:
                if region.type == "UI":
                    region.tag_redraw()


class _BackendOp:
    """Shared: start a request; in background mode block, in the UI run modal with a timer and poll."""
    _timer = None
    _job = None

    def start_request(self, context, prompts, options):
        try:
            ensure_backend(context)
            job = sess.start_generate(sess.SESSION, prompts, paths.clips_dir(), **options)
        except sess.SessionError as err:
            self.report({"ERROR"}, str(err))
            return None
        self._job = job
        rt = _runtime(context)
        rt.running, rt.progress, rt.status = True, 0.0, job.status
        return job

    def execute(self, context):
        if self._begin(context) is None:
            return {"CANCELLED"}
        self._job.wait(WAIT_S)
        return self.finish(context)

    def invoke(self, context, event):
        if self._begin(context) is None:
            return {"CANCELLED"}
        return self.run(context)

    def start_for_target(self, context, prompts, options):
        """Check the target armature, remember it, and start the request."""
        obj, err = target_armature(context)
        if err:
            self.report({"ERROR"}, err)
            return None
        self._obj_name = obj.name
        return self.start_request(context, prompts, options)

    def apply_result(self, context, result):
        obj = bpy.data.objects.get(self._obj_name)
        if obj is None:
            raise ValueError("the target armature was deleted during generation")
        return _apply_clips(self, context, obj, result["clips"], result.get("model"), self.placement_for(context))

    def run(self, context):
        if bpy.app.background or not context.window_manager.windows:
            self._job.wait(WAIT_S)
            return self.finish(context)
        wm = context.window_manager
        self._shown = None
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC":
            self._job.cancel()
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        done = self._job.pump()
        shown = (self._job.status, self._job.progress)
        if shown != self._shown:   # only a change is drawn: no redraw on the ticks where nothing happened
            self._shown = shown
            rt = _runtime(context)
            rt.status, rt.progress = shown
            _redraw(context)
        if not done:
            return {"RUNNING_MODAL"}
        context.window_manager.event_timer_remove(self._timer)
        self._timer = None
        result = self.finish(context)
        _redraw(context, viewport=True)
        return result

    def finish(self, context):
        job, rt = self._job, _runtime(context)
        rt.running = False
        if job.error:
            rt.status, rt.progress = job.error if job.error_code != "cancelled" else "cancelled", 0.0
            if job.error_code == "cancelled":
                self.report({"WARNING"}, "generation cancelled")
            else:
                self.report({"ERROR"}, job.error)
            return {"CANCELLED"}
        try:
            n = self.apply_result(context, job.result)
        except (MotionError, SkeletonError, OSError, ValueError) as err:
            rt.status = f"failed: {err}"
            self.report({"ERROR"}, str(err).splitlines()[0])
            return {"CANCELLED"}
        rt.status, rt.progress = f"done: {n} clip(s)", 1.0
        self.report({"INFO"}, rt.status)
        return {"FINISHED"}

    def cancel(self, context):   # Blender calls this when the modal operator is aborted
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        if self._job is not None:
            self._job.cancel()


def sampling_options(s, **extra):
    """The panel's sampling settings as request options; temperature 0 means greedy, no seconds means auto."""
    opts = {"seed": int(s.seed), **extra}
    if not s.auto_length:
        opts["seconds"] = float(s.seconds)
    if s.temperature == 0:
        opts["sampling"] = "greedy"
    else:
        opts["temperature"] = float(s.temperature)
    return opts


def _apply_clips(op, context, obj, clips, model, placement, start=None):
    s = settings(context)
    frame = context.scene.frame_current if start is None else start
    for i, clip in enumerate(clips):
        motion = apply.load_motion(clip["path"])
        name = apply.clip_name(clip["prompt"])
        props = {"motionmill_prompt": clip["prompt"], "motionmill_seed": int(clip.get("seed", -1)),
                 "motionmill_model": model or "", "motionmill_path": clip["path"]}
        # variations after the first go to NLA strips so the first stays the active action
        place = placement if (placement == "NLA" or i == 0) else "NLA"
        action, strip, anim = apply.apply_motion(context.scene, obj, motion, name, props, s.root_motion,
                                                 s.cleanup_feet, place, frame, s.blend_in, s.blend_out)
        if strip is not None:
            frame = strip.frame_end + 1
        apply.add_history(context.scene, name, clip["path"], action, clip.get("seed"), model, clip["prompt"])
    if placement == "NLA":  # else the animator's active action would hold its pose over the new strips
        nla.push_down_active_action(obj)
    return len(clips)


class MOTIONMILL_OT_generate(_BackendOp, bpy.types.Operator):
    """Generate a motion from the prompt and put it on the target armature"""
    bl_idname = "motionmill.generate"
    bl_label = "Generate"
    bl_options = {"REGISTER", "UNDO"}

    def _begin(self, context):
        s = settings(context)
        prompts = prompt_lines(s)
        if not prompts:
            self.report({"ERROR"}, "the prompt is empty: type what the character should do")
            return None
        if _runtime(context).running:
            self.report({"ERROR"}, "a generation is already running: wait for it or press Cancel")
            return None
        return self.start_for_target(context, prompts, sampling_options(s, variations=int(s.variations)))

    def placement_for(self, context):
        return settings(context).placement


def read_prompts(text=None, filepath=""):
    if filepath:
        with open(bpy.path.abspath(filepath), encoding="utf-8") as f:
            lines = f.read().splitlines()
    elif text is not None:
        lines = text.as_string().splitlines()
    else:
        lines = []
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


class MOTIONMILL_OT_generate_batch(_BackendOp, bpy.types.Operator):
    """One NLA strip per prompt (text block or file, one per line), laid one after another"""
    bl_idname = "motionmill.generate_batch"
    bl_label = "Generate Batch"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(name="Prompts file", subtype="FILE_PATH", default="")

    def _begin(self, context):
        s = settings(context)
        try:
            prompts = read_prompts(None if self.filepath else s.prompt_text, self.filepath)
        except OSError as err:
            self.report({"ERROR"}, f"cannot read prompts file {self.filepath}: {err.strerror}")
            return None
        if not prompts:
            self.report({"ERROR"}, "no prompts: choose a text block (one prompt per line) or a prompts file")
            return None
        return self.start_for_target(context, prompts, sampling_options(s))

    def placement_for(self, context):
        return "NLA"


class MOTIONMILL_OT_import_motion(bpy.types.Operator):
    """Import a motion file (interchange .npz, 272-feature .npy, AMASS .npz, BVH) onto the target armature"""
    bl_idname = "motionmill.import_motion"
    bl_label = "Import Motion"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(subtype="FILE_PATH")
    filter_glob: StringProperty(default="*.npz;*.npy;*.bvh", options={"HIDDEN"})
    placement: EnumProperty(items=[("PANEL", "As in panel", ""), ("INSERT", "Insert", ""), ("NLA", "NLA strip", "")],
                            default="PANEL")

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        obj, err = target_armature(context)
        if err:
            self.report({"ERROR"}, err)
            return {"CANCELLED"}
        s = settings(context)
        path = bpy.path.abspath(self.filepath)
        placement = s.placement if self.placement == "PANEL" else self.placement
        try:
            motion = apply.load_motion(path)
            name = apply.clip_name(path)
            action, strip, anim = apply.apply_motion(context.scene, obj, motion, name, {"motionmill_path": path},
                                                     s.root_motion, s.cleanup_feet, placement, None, s.blend_in, s.blend_out)
            if placement == "NLA":  # else the animator's active action would hold its pose over the new strip
                nla.push_down_active_action(obj)
        except (MotionError, SkeletonError) as err:
            self.report({"ERROR"}, str(err).splitlines()[0])
            return {"CANCELLED"}
        apply.add_history(context.scene, name, path, action)
        for note in anim.notes:
            self.report({"WARNING"}, note)
        self.report({"INFO"}, f"imported {os.path.basename(path)} onto {obj.name} as '{action.name}'")
        return {"FINISHED"}


class MOTIONMILL_OT_retarget(bpy.types.Operator):
    """Retarget from an SMPL armature's action (or a motion file) onto the target armature"""
    bl_idname = "motionmill.retarget"
    bl_label = "Retarget"
    bl_options = {"REGISTER", "UNDO"}

    source: StringProperty(name="Source armature", description="Object name of the SMPL armature")
    filepath: StringProperty(subtype="FILE_PATH")

    def execute(self, context):
        from . import smpl_rig
        obj, err = target_armature(context)
        if err:
            self.report({"ERROR"}, err)
            return {"CANCELLED"}
        s = settings(context)
        path = bpy.path.abspath(self.filepath) if self.filepath else ""
        try:
            if path:
                motion, name = apply.load_motion(path), apply.clip_name(path)
            else:
                src = bpy.data.objects.get(self.source) if self.source else next(
                    (o for o in context.selected_objects if o.type == "ARMATURE" and o != obj), None)
                if src is None or src.type != "ARMATURE":
                    self.report({"ERROR"}, "no source: select an SMPL armature besides the target, or give a file")
                    return {"CANCELLED"}
                if src == obj:
                    self.report({"ERROR"}, "the source and the target are the same armature")
                    return {"CANCELLED"}
                motion = smpl_rig.motion_from_armature(context.scene, src)
                name = (src.animation_data.action.name if src.animation_data and src.animation_data.action
                        else src.name)
            action, strip, _ = apply.apply_motion(context.scene, obj, motion, name, {}, s.root_motion,
                                                  s.cleanup_feet, s.placement, None, s.blend_in, s.blend_out)
        except (MotionError, SkeletonError, ValueError) as err:
            self.report({"ERROR"}, str(err).splitlines()[0])
            return {"CANCELLED"}
        apply.add_history(context.scene, name, path, action)
        return {"FINISHED"}


class MOTIONMILL_OT_cleanup_feet(bpy.types.Operator):
    """Remove foot sliding from the armature's active action (into a new action; the old one is kept)"""
    bl_idname = "motionmill.cleanup_feet"
    bl_label = "Clean Up Feet"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        from . import cleanup
        obj, err = target_armature(context)
        if err:
            self.report({"ERROR"}, err)
            return {"CANCELLED"}
        try:
            action = cleanup.cleanup_active_action(context.scene, obj)
        except (MotionError, SkeletonError, ValueError) as err:
            self.report({"ERROR"}, str(err).splitlines()[0])
            return {"CANCELLED"}
        self.report({"INFO"}, f"foot cleanup written to '{action.name}'")
        return {"FINISHED"}


class MOTIONMILL_OT_add_smpl_armature(bpy.types.Operator):
    """Add a preview SMPL-22 skeleton (with the SMPL body mesh if SMPL model files are set in the preferences)"""
    bl_idname = "motionmill.add_smpl_armature"
    bl_label = "Add SMPL Armature"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        from . import smpl_rig
        obj, mesh_note = smpl_rig.add_smpl_armature(context, get_prefs(context).smpl_model_dir)
        self.report({"INFO"}, f"added '{obj.name}'; {mesh_note}")
        return {"FINISHED"}


class MOTIONMILL_OT_cancel(bpy.types.Operator):
    """Cancel the running generation (between decoding steps)"""
    bl_idname = "motionmill.cancel"
    bl_label = "Cancel"

    def execute(self, context):
        job = sess.SESSION.job
        if job is None or job.done:
            self.report({"WARNING"}, "nothing is running")
            return {"CANCELLED"}
        job.cancel()
        _runtime(context).status = "cancelling…"
        return {"FINISHED"}


class MOTIONMILL_OT_restart_backend(bpy.types.Operator):
    """Stop the backend service and start a fresh one"""
    bl_idname = "motionmill.restart_backend"
    bl_label = "Restart Backend"

    def execute(self, context):
        sess.SESSION.close()
        try:
            ensure_backend(context)
        except sess.SessionError as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        _runtime(context).running = False
        _runtime(context).status = "backend restarted"
        return {"FINISHED"}


class MOTIONMILL_OT_doctor(bpy.types.Operator):
    """Run `backend doctor` and show its result"""
    bl_idname = "motionmill.doctor"
    bl_label = "Run Doctor"

    def execute(self, context):
        import subprocess
        p = get_prefs(context)
        py = bpy.path.abspath(p.backend_python)
        if not os.path.isfile(py):
            self.report({"ERROR"}, f"backend Python not found: {py or '(not set)'}")
            return {"CANCELLED"}
        args = [py, "-m", "backend", "doctor"] + (["--model-dir", bpy.path.abspath(p.model_dir)] if p.model_dir else [])
        try:
            r = subprocess.run(args, cwd=bpy.path.abspath(p.backend_dir) or None, capture_output=True, text=True,
                               timeout=120)
        except (OSError, subprocess.TimeoutExpired) as err:
            self.report({"ERROR"}, f"doctor failed: {err}")
            return {"CANCELLED"}
        rt = _runtime(context)
        rt.doctor_output = (r.stdout + r.stderr).strip()[-4000:]
        self.report({"INFO"} if r.returncode == 0 else {"ERROR"}, (rt.doctor_output.splitlines() or ["(no output)"])[-1])
        return {"FINISHED"} if r.returncode == 0 else {"CANCELLED"}


class _HistoryOp:
    index: IntProperty(default=-1)

    def item(self, context):
        s = settings(context)
        i = self.index if self.index >= 0 else s.history_index
        return s.history[i] if 0 <= i < len(s.history) else None, i


class MOTIONMILL_OT_history_apply(_HistoryOp, bpy.types.Operator):
    """Re-apply the clip to the target armature (a new action)"""
    bl_idname = "motionmill.history_apply"
    bl_label = "Apply to Rig"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        h, _ = self.item(context)
        if h is None or not h.path:
            self.report({"ERROR"}, "no clip file for this history entry")
            return {"CANCELLED"}
        return bpy.ops.motionmill.import_motion(filepath=h.path)


class MOTIONMILL_OT_history_preview(_HistoryOp, bpy.types.Operator):
    """Show the clip's action on the target armature and play it"""
    bl_idname = "motionmill.history_preview"
    bl_label = "Preview"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        from . import compat
        h, _ = self.item(context)
        obj, err = target_armature(context)
        if err or h is None or h.action is None:
            self.report({"ERROR"}, err or "this clip's action no longer exists")
            return {"CANCELLED"}
        ad = obj.animation_data or obj.animation_data_create()
        if ad.action is not None:
            ad.action.use_fake_user = True
        compat.assign_action(obj, h.action, compat.ensure_slot(h.action, obj))
        lo, hi = h.action.frame_range
        context.scene.frame_current = int(lo)
        if not bpy.app.background and context.screen and not context.screen.is_animation_playing:
            bpy.ops.screen.animation_play()
        return {"FINISHED"}


class MOTIONMILL_OT_history_delete(_HistoryOp, bpy.types.Operator):
    """Remove the clip from the history (its action stays if anything uses it)"""
    bl_idname = "motionmill.history_delete"
    bl_label = "Delete"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        h, i = self.item(context)
        if h is None:
            return {"CANCELLED"}
        s = settings(context)
        s.history.remove(i)
        s.history_index = min(i, len(s.history) - 1)
        return {"FINISHED"}


CLASSES = (MOTIONMILL_OT_generate, MOTIONMILL_OT_generate_batch, MOTIONMILL_OT_import_motion, MOTIONMILL_OT_retarget,
           MOTIONMILL_OT_cleanup_feet, MOTIONMILL_OT_add_smpl_armature, MOTIONMILL_OT_cancel,
           MOTIONMILL_OT_restart_backend, MOTIONMILL_OT_doctor, MOTIONMILL_OT_history_apply,
           MOTIONMILL_OT_history_preview, MOTIONMILL_OT_history_delete)
