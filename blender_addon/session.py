"""The add-on's long-lived backend service (one per Blender session) and the state of a running request.

No bpy here: operators call these functions on Blender's main thread; the client's reader threads only fill
a queue. `Job.pump()` (UI: from a modal timer) never blocks; `Job.wait()` (background mode) blocks."""
import os
import time

from .client import BackendClient, BackendError

# What each backend phase means to an animator, and where the bar stands then (decoding fills 10-90 %).
PHASE_TEXT = {"starting": "starting the backend…", "queued": "queued…",
              "loading": "loading the model (first time only)…", "encoding": "reading the prompt…",
              "writing": "writing the clip…", "retargeting": "retargeting…"}
PHASE_PROGRESS = {"loading": 0.03, "encoding": 0.08, "writing": 0.92, "retargeting": 0.95}


def decoding_text(fraction, clip, clips, seconds_left, last_clip=None, segment=None, segments=1):
    """'generating 40% · clip 2 of 3 · about 4 s left' (the clip count only for several clips, the time once known);
    'clips 1-3 of 3' while one pass makes several at once; '· segment 2 of 3' on a timeline."""
    parts = [f"generating {int(100 * fraction)}%"]
    if clips > 1:
        last_clip = min(last_clip or clip, clips)
        parts.append(f"clip {min(clip, clips)} of {clips}" if last_clip <= clip
                     else f"clips {clip}\u2013{last_clip} of {clips}")
    if segment is not None and segments > 1:
        parts.append(f"segment {segment + 1} of {segments}")
    if seconds_left is not None:
        parts.append(f"about {max(1, round(seconds_left))} s left")
    return " · ".join(parts)


class SessionError(Exception):
    """A problem starting or talking to the backend: one line for self.report."""


class Session:
    def __init__(self):
        self.client = None
        self.key = None
        self.job = None  # the request the panel is showing

    def ensure(self, python, backend_dir, model_dir, device="auto", quant="", idle_minutes=0.0, compile="auto"):
        """The running service for these settings; (re)starts it when the settings changed or it died."""
        if not python:
            raise SessionError("no backend Python set: set it in Preferences > Add-ons > MotionMill")
        if not os.path.isfile(python):
            raise SessionError(f"backend Python not found: {python} (check Preferences > Add-ons > MotionMill)")
        if not model_dir:
            raise SessionError("no model directory set: set it in Preferences > Add-ons > MotionMill")
        if not os.path.isdir(model_dir):
            raise SessionError(f"model directory not found: {model_dir}")
        args = []
        if quant:
            args += ["--quant", quant]
        if idle_minutes:
            args += ["--idle-unload-minutes", str(float(idle_minutes))]
        if compile and compile != "auto":
            args += ["--compile", compile]
        key = (python, backend_dir, model_dir, device, quant, float(idle_minutes or 0), compile)
        if self.client is not None and (self.key != key or not self.client.alive):
            self.close()
        if self.client is None:
            try:
                self.client = BackendClient(python=python, cwd=backend_dir or None, model_dir=model_dir,
                                            device=device or None, extra_args=args)
            except OSError as err:
                self.client = None
                raise SessionError(f"cannot start the backend with {python}: {err.strerror or err}") from None
            self.key = key
        return self.client

    def close(self):
        if self.client is not None:
            try:
                self.client.close(timeout=5)
            finally:
                self.client = None
                self.key = None
                self.job = None

    @property
    def alive(self):
        return self.client is not None and self.client.alive


class Job:
    """One generate request: progress text/fraction, then .result (the final event) or .error (one line)."""

    def __init__(self, session, rid, status="queued…"):
        self.session, self.rid = session, rid
        self.status, self.progress = status, 0.0
        self.result = self.error = None
        self.error_code = None
        self.done = False
        self.listeners = []   # callables(event), e.g. tests or the modal operator
        self.decoding_since = None  # (time, fraction) at the first decoding step: the rate gives the time left
        self.fraction = 0.0         # of the whole request decoded: never goes back

    def _event(self, ev):
        if ev.get("id") != self.rid:
            return
        for fn in list(self.listeners):
            fn(ev)
        kind = ev.get("event")
        if kind == "progress":
            phase = ev.get("phase", "")
            if phase == "decoding":
                self._decoding(ev)
            elif phase == "queued" and ev.get("position", 1) > 1:
                ahead = ev["position"] - 1
                self.status = f"waiting for {ahead} earlier request{'s' if ahead > 1 else ''}…"
            else:
                key = "loading" if phase.startswith("loading") else phase
                self.status = PHASE_TEXT.get(key, f"{phase}…")
                clips = ev.get("clips", 1)
                if key == "writing" and ev.get("clips_done", 0) + 1 < clips:    # more clips to come: not near the end
                    self.status = f"writing clip {ev['clips_done'] + 1} of {clips}…"
                    return
                self.progress = max(self.progress, PHASE_PROGRESS.get(key, self.progress))
        elif ev.get("final"):
            self.done = True
            if kind == "error":
                self.error_code = ev.get("code")
                self.error = _one_line(ev.get("code"), ev.get("message", ""))
                self.status = "cancelled" if self.error_code == "cancelled" else "failed"
            else:
                self.result = ev
                self.status, self.progress = PHASE_TEXT["retargeting"], PHASE_PROGRESS["retargeting"]

    def _decoding(self, ev):
        """The fraction of the whole request: clips_done written before this pass, which makes pass_clips at once
        (a batch) or, on a timeline, segment `segment` of `segments` of one clip. It never goes back."""
        step, total = ev.get("step", 0), max(1, ev.get("total", 1))
        clips, done = max(1, ev.get("clips", 1)), ev.get("clips_done", 0)
        rows = max(1, ev.get("pass_clips", 1))
        segment, segments = ev.get("segment"), max(1, ev.get("segments", 1))
        within = (segment + step / total) / segments if segment is not None else step / total
        fraction = max(self.fraction, min(1.0, (done + rows * within) / clips))
        self.fraction = fraction
        now = time.monotonic()
        if self.decoding_since is None:
            self.decoding_since = (now, fraction)
        t0, f0 = self.decoding_since
        left = None
        if f0 < fraction < 1.0 and now - t0 > 0.2:  # the service reports about every 0.25 s: from the second report
            left = (now - t0) / (fraction - f0) * (1.0 - fraction)
        self.status = decoding_text(fraction, done + 1, clips, left, done + rows, segment, segments)
        self.progress = max(self.progress, 0.1 + 0.8 * fraction)

    def pump(self):
        """Handle every event that has arrived; returns True once the request is finished."""
        client = self.session.client
        if client is None:
            if not self.done:
                self.done, self.error, self.error_code = True, "the backend was stopped", "backend_stopped"
            return True
        for ev in client.poll():
            self._event(ev)
            if ev.get("event") == "exit" and not self.done:
                self.done, self.error_code = True, ev.get("code")
                self.error = _one_line(ev.get("code"), ev.get("message", ""))
        return self.done

    def wait(self, timeout):
        """Block until finished (background mode). On timeout: cancel, and report it as an error."""
        client = self.session.client
        try:
            ev = client.wait(self.rid, timeout=timeout, on_event=self._event, raise_errors=False)
            self._event(ev)
        except TimeoutError:
            self.cancel()
            self.done, self.error_code = True, "timeout"
            self.error = f"the backend did not finish within {timeout:g} s (cancelled)"
        return self

    def cancel(self):
        client = self.session.client
        if client is not None and client.alive and not self.done:
            try:
                client.cancel(self.rid)
            except BackendError:
                pass
            self.status = "cancelling…"


def _one_line(code, message):
    lines = [ln for ln in str(message).splitlines() if ln.strip()]
    head = lines[0] if lines else str(code)
    if code in ("backend_crashed", "backend_stopped") and len(lines) > 1:
        head += " — " + lines[-1].strip()   # the child's last error line (e.g. the exception)
    return f"backend: {head}"


SESSION = Session()


def start_generate(session, prompts, out, **options):
    client = session.client
    fields = {k: v for k, v in options.items() if v is not None}
    try:
        if not prompts:          # a timeline request carries its prompts in "timeline"
            rid = client.generate(out=out, **fields)
        elif len(prompts) == 1:
            rid = client.generate(prompts[0], out=out, **fields)
        else:
            rid = client.generate(prompts=prompts, out=out, **fields)
    except BackendError as err:
        raise SessionError(_one_line(err.code, err.message)) from None
    # what the panel shows until the first event: a service that has never answered is still starting up
    job = Job(session, rid, status=PHASE_TEXT["queued" if client.answered else "starting"])
    session.job = job
    return job
