"""The backend, as the animator meets it (motionmill.*): cancel a generation, restart the backend, run the doctor."""
import os
import time

import bpy

from . import session as sess
from .ops import _runtime, ensure_backend
from .props import get_prefs

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


CLASSES = (MOTIONMILL_OT_cancel, MOTIONMILL_OT_restart_backend, MOTIONMILL_OT_doctor)
