"""What the animator sees when something fails that nobody expected: one red line in the panel naming what failed,
never a traceback. The whole traceback goes to the system console (stderr) and to MotionMill's log file,
<data dir>/logs/motionmill.log (paths.data_dir(): the extension's user folder, or $MOTIONMILL_DATA /
~/.local/share/motionmill); past LOG_MAX bytes it moves to motionmill.log.1 (replacing the older one) and starts over.

Every operator the add-on registers goes through guard() (blender_addon.register): an exception escaping its execute,
invoke or modal ends here. Expected errors (MotionError, SkeletonError, the backend's error events) are caught inside
the operators and keep their own one-line messages. No bpy at import (blender_addon's import rule)."""
import datetime
import os
import sys
import traceback

from . import paths

LOG_NAME = "motionmill.log"
LOG_MAX = 1 << 20      # bytes: the log and its one older copy stay under about 2 MB


def log_path(create=True):
    return os.path.join(paths.data_dir(create), "logs", LOG_NAME)


def log_traceback(what, err):
    """The whole traceback of `err` on stderr and appended to the log file. -> the log's path, None if unwritable."""
    stamp = datetime.datetime.now().isoformat(sep=" ", timespec="seconds")
    text = f"MotionMill: {what} failed ({stamp})\n" + "".join(traceback.format_exception(type(err), err,
                                                                                          err.__traceback__))
    sys.stderr.write(text)
    sys.stderr.flush()
    try:
        path = log_path()
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.isfile(path) and os.path.getsize(path) > LOG_MAX:
            os.replace(path, path + ".1")
        with open(path, "a", encoding="utf-8") as f:
            f.write(text + "\n")
        return path
    except OSError as log_err:
        sys.stderr.write(f"MotionMill: cannot write the log file: {log_err}\n")
        return None


def one_line(what, err, log):
    """'retargeting failed: AttributeError: ... (details in LOG)'."""
    msg = next((ln.strip() for ln in str(err).splitlines() if ln.strip()), "")
    return f"{what} failed: {type(err).__name__}{': ' + msg if msg else ''} (details in {log or 'the system console'})"


def report(op, context, what, err):
    """Log `err` whole; show it as one line: Blender's report (ERROR) and the panel's status, in red with no success
    mark and no progress. The status is left alone while another operator's generation runs (its bar shows it).
    -> {'CANCELLED'} for the operator to return."""
    line = one_line(what, err, log_traceback(what, err))
    rt = getattr(getattr(context, "window_manager", None), "motionmill", None)
    if rt is not None and (getattr(op, "owns_run", False) or not rt.running):
        rt.running, rt.failed, rt.done, rt.status, rt.progress = False, True, False, line, 0.0
    op.report({"ERROR"}, line)
    return {"CANCELLED"}


def _stop(op, context):
    """A modal operator that failed: remove its timer etc. (its cancel(), which Blender calls only when it aborts
    the operator itself)."""
    cancel = getattr(op, "cancel", None)
    if cancel is not None:
        try:
            cancel(context)
        except Exception as err:      # noqa: BLE001  the first failure is the one to report; this one is logged
            log_traceback(f"{op.bl_label} (cleaning up)", err)


# Blender checks the argument count of these methods: each wrapper has exactly the original's.
def _execute(fn):
    def execute(self, context):
        try:
            return fn(self, context)
        except Exception as err:      # noqa: BLE001  an unexpected error: one line, not a traceback
            return report(self, context, self.bl_label, err)
    return execute


def _with_event(fn):
    """invoke and modal: a failure also stops the modal operator (its timer, its job)."""
    def handler(self, context, event):
        try:
            return fn(self, context, event)
        except Exception as err:      # noqa: BLE001
            _stop(self, context)
            return report(self, context, self.bl_label, err)
    return handler


_WRAPPERS = {"execute": _execute, "invoke": _with_event, "modal": _with_event}


def guard(cls):
    """Route the operator class's execute/invoke/modal (its own or inherited) through report(); other classes are
    returned as they are. Safe to call again (register after unregister)."""
    import bpy
    if not (isinstance(cls, type) and issubclass(cls, bpy.types.Operator)):
        return cls
    for name, wrap in _WRAPPERS.items():
        fn = getattr(cls, name, None)
        if fn is None or getattr(fn, "motionmill_guarded", False):
            continue
        guarded = wrap(fn)
        guarded.__name__, guarded.__doc__, guarded.__wrapped__, guarded.motionmill_guarded = name, fn.__doc__, fn, True
        setattr(cls, name, guarded)
    return cls
