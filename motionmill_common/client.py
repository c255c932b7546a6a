"""The client of `python -m backend serve`: standard library only (Blender's Python has no torch).

    client = BackendClient(python="/path/to/venv/bin/python", cwd="/path/to/motionmill", model_dir=...)
    rid = client.generate("a person walks forward", out="/tmp/clips", seconds=4)
    event = client.wait(rid, timeout=600)          # background mode / pipeline scripts: blocks
    for event in client.poll(): ...                # a Blender timer: never blocks

Events are read on a background thread into a queue. If the service dies, every request still open gets an
`error` event with code "backend_crashed" whose message ends with the tail of the service's stderr; `restart()`
starts a fresh service. Call the methods from one thread (Blender's main thread, or the script's).
"""
import collections
import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time

from .protocol import error_event

STDERR_LINES = 60


class BackendError(Exception):
    """An `error` event: .code (e.g. "cancelled", "out_of_memory", "backend_crashed") and .message."""

    def __init__(self, code, message, event=None):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.event = code, message, event or {}


class BackendCrashed(BackendError):
    pass


class BackendClient:
    def __init__(self, python=None, cwd=None, model_dir=None, device=None, extra_args=(), env=None,
                 pythonpath=None, start=True, log=None):
        self.python = python or sys.executable
        self.cwd = cwd
        self.argv = [self.python, "-m", "backend", "serve"]
        if model_dir:
            self.argv += ["--model-dir", os.fspath(model_dir)]
        if device:
            self.argv += ["--device", device]
        self.argv += [str(a) for a in extra_args]
        self.env = dict(os.environ if env is None else env)
        paths = [p for p in (pythonpath, cwd) if p] + ([self.env["PYTHONPATH"]] if self.env.get("PYTHONPATH") else [])
        if paths:
            self.env["PYTHONPATH"] = os.pathsep.join(os.fspath(p) for p in paths)
        self.env["PYTHONUNBUFFERED"] = "1"
        self.log = log
        self.proc = None
        self.answered = False
        self._ids = itertools.count(1)
        self._prefix = f"c{os.getpid()}-{int(time.time() * 1000) % 100000}-"
        if start:
            self.start()

    # ---- process ------------------------------------------------------------------------------------------------
    def start(self):
        if self.alive:
            return
        self._inbox = queue.Queue()
        self._backlog = collections.deque()
        self._open = set()
        self._lock = threading.Lock()
        self._stderr = collections.deque(maxlen=STDERR_LINES)
        self._closing = False
        self.answered = False        # an event has come from this service process (it is up, not starting)
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     cwd=self.cwd, env=self.env, bufsize=0)
        self._err_thread = threading.Thread(target=self._read_stderr, args=(self.proc,), daemon=True)
        self._err_thread.start()
        threading.Thread(target=self._read_stdout, args=(self.proc,), daemon=True).start()

    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def stderr_tail(self, lines=20):
        return "\n".join(list(self._stderr)[-lines:]) if self.proc else ""

    def _read_stderr(self, proc):
        for raw in iter(proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            self._stderr.append(line)
            if self.log:
                self.log(line)

    def _read_stdout(self, proc):
        for raw in iter(proc.stdout.readline, b""):
            try:
                event = json.loads(raw)
            except ValueError:
                self._stderr.append(f"(unparsable output) {raw[:200]!r}")
                continue
            self.answered = True
            if event.get("final"):
                with self._lock:
                    self._open.discard(event.get("id"))
            self._inbox.put(event)
        rc = proc.wait()
        self._err_thread.join(timeout=5)
        tail = self.stderr_tail(8)
        if self._closing:
            code, message = "backend_stopped", f"the backend was stopped (exit code {rc})"
        else:
            code, message = "backend_crashed", f"the backend exited unexpectedly (exit code {rc})" + (
                f"; its last output:\n{tail}" if tail else "")
        with self._lock:
            still_open, self._open = sorted(self._open, key=str), set()
        for rid in still_open:
            self._inbox.put(error_event(rid, code, message))
        self._inbox.put({"id": None, "event": "exit", "code": code, "returncode": rc, "message": message, "final": True})

    def restart(self):
        """Stop the service if it still runs (kill after a grace period) and start a fresh one."""
        self.close(timeout=5)
        self.start()

    def close(self, timeout=10):
        if self.proc is None:
            return None
        self._closing = True
        if self.proc.poll() is None:
            try:
                # shutdown, not only EOF: a service that also listens on a port outlives its stdin
                self.proc.stdin.write(b'{"id": "close", "op": "shutdown"}\n')
                self.proc.stdin.close()
            except (OSError, ValueError):
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except OSError:
                pass
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- requests -----------------------------------------------------------------------------------------------
    def request(self, op, request_id=None, **fields):
        """Send one request; returns its id. Raises BackendCrashed if the service is not running."""
        rid = request_id if request_id is not None else f"{self._prefix}{next(self._ids)}"
        line = json.dumps({"id": rid, "op": op, **fields}, allow_nan=False) + "\n"
        if not self.alive:
            raise BackendCrashed("backend_crashed", "the backend is not running" + self._tail_suffix())
        with self._lock:
            self._open.add(rid)
        try:
            self.proc.stdin.write(line.encode("utf-8"))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            with self._lock:
                self._open.discard(rid)
            raise BackendCrashed("backend_crashed", "the backend stopped reading requests" + self._tail_suffix()) from None
        return rid

    def _tail_suffix(self):
        tail = self.stderr_tail(8)
        return f"; its last output:\n{tail}" if tail else ""

    def generate(self, prompt=None, out=None, prompts=None, **options):
        fields = {"out": os.fspath(out), **options}
        if prompts is not None:
            fields["prompts"] = list(prompts)
        elif prompt is not None:   # a timeline request carries its prompts in "timeline"
            fields["prompt"] = prompt
        return self.request("generate", **fields)

    def cancel(self, target):
        return self.request("cancel", target=target)

    # ---- events -------------------------------------------------------------------------------------------------
    def poll(self):
        """Every event that has arrived, without blocking (for Blender timers)."""
        out = list(self._backlog)
        self._backlog.clear()
        while True:
            try:
                out.append(self._inbox.get_nowait())
            except queue.Empty:
                return out

    def wait(self, rid, timeout=None, on_event=None, raise_errors=True):
        """Block until request `rid` has its final event and return it; its other events go to on_event, other
        requests' events stay queued for poll(). Raises BackendError on an error event (unless raise_errors is
        False) and TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for i, event in enumerate(list(self._backlog)):
            if event.get("id") == rid and event.get("final"):
                del self._backlog[i]
                return self._finish(event, raise_errors)
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"no answer to request {rid!r} within {timeout:g} s")
            try:
                event = self._inbox.get(timeout=left)
            except queue.Empty:
                continue
            if event.get("id") != rid:
                self._backlog.append(event)
                continue
            if event.get("final"):
                return self._finish(event, raise_errors)
            if on_event:
                on_event(event)

    def _finish(self, event, raise_errors):
        if raise_errors and event.get("event") == "error":
            cls = BackendCrashed if event.get("code") in ("backend_crashed", "backend_stopped") else BackendError
            raise cls(event.get("code"), event.get("message", ""), event)
        return event

    def call(self, op, timeout=None, **fields):
        """request() then wait(): the final event."""
        return self.wait(self.request(op, **fields), timeout=timeout)
