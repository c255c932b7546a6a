"""Generating (motionmill.generate, generate_batch) and what every operator shares: the target armature, the backend
request run modally with a timer. Thin: validation and reporting here, the work in apply/keying/nla/session. The other
operators: ops_motion (motion tools), ops_clips (the Clips list), ops_backend (cancel, restart, doctor), long
(Continue, Timeline)."""
import bpy

from . import apply, failures, nla, paths, session as sess
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


CLASSES = (MOTIONMILL_OT_generate, MOTIONMILL_OT_generate_batch)
