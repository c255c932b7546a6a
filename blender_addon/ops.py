"""Operators (motionmill.*). Thin: validation and reporting here, the work in apply/keying/nla/session/smpl_rig."""
import os
import time

import bpy
from bpy.props import CollectionProperty, EnumProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from . import apply, compat, failures, nla, paths, session as sess
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


class _TargetPoll:
    """poll: the operator needs a target armature; when there is none the button is greyed out and its tooltip (and
    the error a script gets) says why, as Blender's own operators do."""

    @classmethod
    def poll(cls, context):
        return poll_target(cls, context)


def poll_target(cls, context):
    """True when there is a target armature; else False, with the reason for the button's tooltip."""
    obj, err = target_armature(context)
    if err:
        cls.poll_message_set(err)
    return obj is not None


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


def _status_bar(context, text):
    """The progress in Blender's status bar too, visible with the sidebar closed (None: Blender's own text)."""
    workspace = getattr(context, "workspace", None)
    if workspace is not None:
        workspace.status_text_set(text)


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


class _BackendOp(_TargetPoll):
    """Shared: start a request; in background mode block, in the UI run modal with a timer and poll."""
    _timer = None
    _job = None
    owns_run = True   # the panel's run state is this operator's: a failure ends it (failures.report)

    @classmethod
    def poll(cls, context):
        if _runtime(context).running:
            cls.poll_message_set("a generation is already running: wait for it or press Cancel")
            return False
        return super().poll(context)

    def fail(self, context, message):
        """An error the panel keeps showing (in red) until the next run, besides Blender's report."""
        rt = _runtime(context)
        rt.running, rt.failed, rt.done, rt.status, rt.progress = False, True, False, message, 0.0
        self.report({"ERROR"}, message)

    def start_request(self, context, prompts, options):
        try:
            ensure_backend(context)
            job = sess.start_generate(sess.SESSION, prompts, paths.clips_dir(), **options)
        except sess.SessionError as err:
            self.fail(context, str(err))
            return None
        self._job = job
        rt = _runtime(context)  # each run starts from a clean status: nothing of the last one stays
        rt.running, rt.failed, rt.done, rt.progress, rt.status = True, False, False, 0.0, job.status
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
            self.fail(context, err)
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
            _status_bar(context, f"MotionMill: {shown[0]}")
        if not done:
            return {"RUNNING_MODAL"}
        context.window_manager.event_timer_remove(self._timer)
        self._timer = None
        _status_bar(context, None)
        result = self.finish(context)
        _redraw(context, viewport=True)
        return result

    def finish(self, context):
        job, rt = self._job, _runtime(context)
        rt.running = False
        if job.error:
            if job.error_code == "cancelled":
                rt.status, rt.progress = "cancelled", 0.0
                self.report({"WARNING"}, "generation cancelled")
            else:
                self.fail(context, job.error)
            return {"CANCELLED"}
        # listed before the retarget: a clip whose retarget fails stays in Clips, and Apply to Rig takes it up later
        for clip in job.result.get("clips") or ():
            apply.register_clip(context.scene, clip["path"], clip.get("prompt", ""), clip.get("seed"),
                                job.result.get("model"))
        try:
            n = self.apply_result(context, job.result)
        except (MotionError, SkeletonError, OSError, ValueError) as err:
            self.fail(context, f"failed: {str(err).splitlines()[0]}")
            return {"CANCELLED"}
        except Exception as err:      # noqa: BLE001  unexpected: one line here, the traceback in the log
            return failures.report(self, context, "retargeting", err)
        rt.status, rt.progress, rt.done = f"done: {n} clip{'' if n == 1 else 's'}", 1.0, True
        self.report({"INFO"}, rt.status)
        return {"FINISHED"}

    def cancel(self, context):   # Blender calls this when the modal operator is aborted
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        _status_bar(context, None)
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
    bl_options = {"UNDO"}  # one undo step, and no redo panel: re-running a generation from it would block

    @classmethod
    def poll(cls, context):
        if not prompt_lines(settings(context)):
            cls.poll_message_set("the prompt is empty: type what the character should do (or pick a Text block)")
            return False
        return super().poll(context)

    def _begin(self, context):
        s = settings(context)
        prompts = prompt_lines(s)
        return self.start_for_target(context, prompts, sampling_options(s, variations=int(s.variations)))

    def placement_for(self, context):
        return settings(context).placement


def read_prompts(text):
    """The prompts of a Text block: its non-empty lines that are not comments (#)."""
    lines = text.as_string().splitlines() if text is not None else []
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


class MOTIONMILL_OT_generate_batch(_BackendOp, bpy.types.Operator):
    """One NLA strip per line of the Text block (one prompt per line), laid one after another"""
    bl_idname = "motionmill.generate_batch"
    bl_label = "Generate Batch"
    bl_options = {"UNDO"}  # one undo step, and no redo panel: re-running a generation from it would block

    @classmethod
    def poll(cls, context):
        if not super().poll(context):
            return False
        s = settings(context)
        if s.prompt_text is None:
            cls.poll_message_set("choose a Text block with one prompt per line: each line becomes an NLA strip")
            return False
        if not read_prompts(s.prompt_text):
            cls.poll_message_set(f"Text block '{s.prompt_text.name}' has no prompts: write one prompt per line")
            return False
        return True

    def _begin(self, context):
        s = settings(context)
        return self.start_for_target(context, read_prompts(s.prompt_text), sampling_options(s))

    def placement_for(self, context):
        return "NLA"


class MOTIONMILL_OT_import_motion(_TargetPoll, bpy.types.Operator, ImportHelper):
    """Import motion files (interchange .npz, 272-feature .npy, AMASS .npz, BVH) onto the target armature"""
    bl_idname = "motionmill.import_motion"
    bl_label = "Import Motion"
    bl_options = {"REGISTER", "UNDO"}

    filter_glob: StringProperty(default="*.npz;*.npy;*.bvh", options={"HIDDEN"})
    # several files from the file browser, or dropped onto the 3D viewport (MOTIONMILL_FH_motion)
    files: CollectionProperty(type=bpy.types.OperatorFileListElement, options={"HIDDEN", "SKIP_SAVE"})
    directory: StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})
    placement: EnumProperty(name="Place", items=[("PANEL", "As in panel", "The panel's Place setting"),
                                                  ("INSERT", "Insert", "Each file a new active action"),
                                                  ("NLA", "NLA strip", "Strips on the MotionMill track, one after another")],
                            default="PANEL")

    def invoke(self, context, event):
        return compat.invoke_import(self, context)

    def paths(self):
        names = [f.name for f in self.files if f.name]
        if names and self.directory:
            return [os.path.join(bpy.path.abspath(self.directory), n) for n in names]
        return [bpy.path.abspath(self.filepath)]

    def execute(self, context):
        obj, _ = target_armature(context)
        paths = self.paths()
        done, failed = [], []
        for path in paths:
            try:
                done.append(import_file(self, context, obj, path, self.placement))
            except (MotionError, SkeletonError) as err:
                failed.append(f"{os.path.basename(path)}: {str(err).splitlines()[0]}")
        if not done:
            self.report({"ERROR"}, "; ".join(failed))
            return {"CANCELLED"}
        for line in failed:
            self.report({"WARNING"}, f"not imported: {line}")
        names = ", ".join(f"'{a.name}'" for a in done)
        self.report({"INFO"}, f"imported {len(done)} file(s) onto {obj.name} as {names}" if len(paths) > 1 else
                    f"imported {os.path.basename(paths[0])} onto {obj.name} as {names}")
        return {"FINISHED"}


def import_file(op, context, obj, path, placement="PANEL"):
    """One motion file onto `obj`, placed as `placement` says (PANEL: the panel's Place), listed in Clips (a clip
    listed before its retarget failed gets this action); the retarget's notes as warnings on `op`. -> the action."""
    s = settings(context)
    placement = s.placement if placement == "PANEL" else placement
    motion = apply.load_motion(path)
    name = apply.clip_name(path)
    action, strip, anim = apply.apply_motion(context.scene, obj, motion, name, {"motionmill_path": path},
                                             s.root_motion, s.cleanup_feet, placement, None, s.blend_in, s.blend_out)
    if placement == "NLA":  # else the animator's active action would hold its pose over the new strip
        nla.push_down_active_action(obj)
    apply.add_history(context.scene, name, path, action)
    for note in anim.notes:
        op.report({"WARNING"}, note)
    return action


class MOTIONMILL_OT_retarget(_TargetPoll, bpy.types.Operator):
    """Retarget from an SMPL armature's action (or a motion file) onto the target armature"""
    bl_idname = "motionmill.retarget"
    bl_label = "Retarget"
    bl_options = {"REGISTER", "UNDO"}

    source: StringProperty(name="Source armature", description="Object name of the SMPL armature")
    filepath: StringProperty(subtype="FILE_PATH")

    def execute(self, context):
        from . import smpl_rig
        obj, _ = target_armature(context)
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


class MOTIONMILL_OT_cleanup_feet(_TargetPoll, bpy.types.Operator):
    """Remove foot sliding from the armature's active action (into a new action; the old one is kept)"""
    bl_idname = "motionmill.cleanup_feet"
    bl_label = "Clean Up Feet"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        from . import cleanup
        obj, _ = target_armature(context)
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

    @classmethod
    def poll(cls, context):
        job = sess.SESSION.job
        if job is None or job.done:
            cls.poll_message_set("nothing is running")
            return False
        return True

    def execute(self, context):
        sess.SESSION.job.cancel()
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
        rt = _runtime(context)
        rt.running, rt.failed, rt.done, rt.status = False, False, False, "backend restarted"
        return {"FINISHED"}


class MOTIONMILL_OT_doctor(bpy.types.Operator):
    """Check what this machine and the model directory can do (`backend doctor`), without blocking Blender"""
    bl_idname = "motionmill.doctor"
    bl_label = "Run Doctor"
    TIMEOUT_S = 120
    _proc = _timer = None

    def _start(self, context):
        import subprocess
        p = get_prefs(context)
        py = bpy.path.abspath(p.backend_python)
        if not os.path.isfile(py):
            self.report({"ERROR"}, f"backend Python not found: {py or '(not set)'}")
            return None
        args = [py, "-m", "backend", "doctor", "--json"]
        if p.model_dir:
            args += ["--model-dir", bpy.path.abspath(p.model_dir)]
        try:
            self._proc = subprocess.Popen(args, cwd=bpy.path.abspath(p.backend_dir) or None, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True)
        except OSError as err:
            self.report({"ERROR"}, f"doctor failed: {err.strerror or err}")
            return None
        self._started = time.monotonic()
        _runtime(context).doctor_running = True
        return self._proc

    def _finish(self, context, output):
        from .doctor_view import doctor_report
        rt = _runtime(context)
        rt.doctor_running = False
        rt.doctor_output = (output or "").strip()[-8000:]
        report = doctor_report(rt.doctor_output)
        ok = report is not None and report["model"]["complete"] and self._proc.returncode == 0
        if report is None:
            summary = (rt.doctor_output.splitlines() or ["(no output)"])[-1]
        else:
            summary = "ready" if ok else "not ready: " + "; ".join(report["model"]["missing"][:1])
        self.report({"INFO"} if ok else {"ERROR"}, f"doctor: {summary}")
        for area in getattr(context, "screen", None) and context.screen.areas or ():
            area.tag_redraw()
        return {"FINISHED"} if ok else {"CANCELLED"}

    def execute(self, context):  # scripts and background mode: wait for it
        import subprocess
        if self._start(context) is None:
            return {"CANCELLED"}
        try:
            out, _ = self._proc.communicate(timeout=self.TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            out = f"doctor did not answer within {self.TIMEOUT_S} s"
        return self._finish(context, out)

    def invoke(self, context, event):
        if bpy.app.background or not context.window_manager.windows:
            return self.execute(context)
        if self._start(context) is None:
            return {"CANCELLED"}
        self._timer = context.window_manager.event_timer_add(0.2, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def cancel(self, context):   # Blender aborting the operator, or failures.guard after an unexpected error
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        _runtime(context).doctor_running = False

    def modal(self, context, event):
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        if self._proc.poll() is None:
            if time.monotonic() - self._started < self.TIMEOUT_S:
                return {"PASS_THROUGH"}
            self._proc.kill()
            self._proc.wait()
            out = f"doctor did not answer within {self.TIMEOUT_S} s"
        else:  # the report is a few KB: it waits whole in the pipe
            out = self._proc.stdout.read()
        context.window_manager.event_timer_remove(self._timer)
        self._timer = None
        return self._finish(context, out)


class _HistoryOp:
    index: IntProperty(default=-1)
    needs_target = False

    @classmethod
    def poll(cls, context):
        if not len(settings(context).history):
            cls.poll_message_set("no clips yet: generate or import one")
            return False
        return poll_target(cls, context) if cls.needs_target else True

    def item(self, context):
        s = settings(context)
        i = self.index if self.index >= 0 else s.history_index
        return s.history[i] if 0 <= i < len(s.history) else None, i


class MOTIONMILL_OT_history_apply(_HistoryOp, bpy.types.Operator):
    """Re-apply the clip to the target armature (a new action)"""
    bl_idname = "motionmill.history_apply"
    bl_label = "Apply to Rig"
    needs_target = True
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        h, _ = self.item(context)
        if h is None or not h.path:
            self.report({"ERROR"}, "no clip file for this history entry")
            return {"CANCELLED"}
        obj, _ = target_armature(context)
        try:
            action = import_file(self, context, obj, h.path)
        except (MotionError, SkeletonError) as err:
            self.report({"ERROR"}, f"{os.path.basename(h.path)}: {str(err).splitlines()[0]}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"'{action.name}' on {obj.name}")
        return {"FINISHED"}


class MOTIONMILL_OT_history_preview(_HistoryOp, bpy.types.Operator):
    """Show the clip's action on the target armature and play it"""
    bl_idname = "motionmill.history_preview"
    bl_label = "Preview"
    needs_target = True
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        from . import compat
        h, _ = self.item(context)
        obj, err = target_armature(context)
        if err or h is None or h.action is None:
            self.report({"ERROR"}, err or ("this clip is not on a rig yet (its retarget failed): use Apply to Rig"
                                           if h is not None and h.pending else "this clip's action no longer exists"))
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


class MOTIONMILL_FH_motion(bpy.types.FileHandler):
    """Drop .bvh / .npz / .npy files onto the 3D viewport: Import Motion onto the target armature (Blender 4.1+)."""
    bl_idname = "MOTIONMILL_FH_motion"
    bl_label = "MotionMill motion"
    bl_import_operator = "motionmill.import_motion"
    bl_file_extensions = ".bvh;.npz;.npy"

    @classmethod
    def poll_drop(cls, context):
        return context.area is not None and context.area.type == "VIEW_3D"


CLASSES += (MOTIONMILL_FH_motion,)
