"""`python -m backend serve`: the JSON-lines service the Blender add-on and pipeline scripts talk to.

Requests come one per line on stdin (and, with --listen 127.0.0.1:PORT --token T, from loopback TCP clients
that first send {"id": .., "op": "hello", "token": T}); events go one per line to stdout (or that socket).
Logs go to stderr: anything else that prints to fd 1 is redirected there so the event stream stays clean.
The service exits when stdin reaches EOF, when its parent process goes away, or on a `shutdown` request.
"""
import hmac
import ipaddress
import os
import socket
import sys
import threading

from . import __version__
from .protocol import MAX_LINE_BYTES, OPS, PROTOCOL_VERSION, RequestError, encode_event, parse_line
from .service_queue import Service, log
from .user_config import default_model_dir

CAPABILITIES = ["batching", "cancel", "progress", "idle_unload", "oom_backoff", "listen"]


class LineReader:
    """Lines from a binary stream, each at most `limit` bytes; longer lines are consumed and reported."""

    def __init__(self, read_line, limit=MAX_LINE_BYTES):
        self.read_line, self.limit = read_line, limit

    def __iter__(self):
        while True:
            line = self.read_line(self.limit + 1)
            if not line:
                return
            if len(line) > self.limit and not line.endswith(b"\n"):
                while True:   # skip the rest of the oversized line
                    more = self.read_line(self.limit)
                    if not more or more.endswith(b"\n"):
                        break
                yield None
                continue
            yield line.rstrip(b"\n").rstrip(b"\r")


class Server:
    def __init__(self, args, out_stream):
        self.args = args
        self.out = out_stream
        self.out_lock = threading.Lock()
        self.lock = threading.Lock()      # one line is handled at a time, whichever client sent it
        self.service = Service(args.model_dir or default_model_dir(), args.device, args.dtype, args.quant,
                               batch_size=args.batch_size, cache=args.cache,
                               idle_unload_s=(args.idle_unload_minutes or 0) * 60,
                               memory_limit_mb=args.memory_limit_mb)
        self.done = threading.Event()

    def emit(self, event):
        data = encode_event(event)
        with self.out_lock:
            try:
                self.out.write(data)
                self.out.flush()
            except (BrokenPipeError, OSError, ValueError):
                self.done.set()           # nobody is listening any more

    def handle(self, raw, sink):
        """One line -> events on `sink`. Never raises for bad input."""
        try:
            if raw is None:
                raise RequestError("line_too_long", f"line longer than {MAX_LINE_BYTES} bytes was skipped")
            req = parse_line(raw)
            with self.lock:
                self._dispatch(req, sink)
        except RequestError as err:
            sink({"id": err.request_id, "event": "error", "code": err.code, "message": err.message, "final": True})
        except Exception as err:   # a bug must not take the service down
            log(f"internal error handling a line: {type(err).__name__}: {err}")
            sink({"id": None, "event": "error", "code": "internal", "message": f"{type(err).__name__}: {err}",
                  "final": True})

    def _dispatch(self, req, sink):
        op, rid = req["op"], req["id"]
        if op == "hello":
            sink({"id": rid, "event": "hello", "version": __version__, "protocol": PROTOCOL_VERSION,
                  "device": self.service.device_name(), "model": self.service.model_name(),
                  "loaded": self.service.model is not None, "ops": list(OPS), "capabilities": CAPABILITIES,
                  "max_line_bytes": MAX_LINE_BYTES, "batch_size": self.service.batch_size, "pid": os.getpid(),
                  "final": True})
        elif op == "status":
            sink({"id": rid, "event": "status", **self.service.status(), "final": True})
        elif op == "cancel":
            state = self.service.cancel(req["target"], rid)
            sink({"id": rid, "event": "cancel", "target": req["target"], "state": state, "final": True})
        elif op == "generate":
            self.service.submit_generate(req, sink)
        elif op in ("load", "unload"):
            self.service.submit_control(op, req, sink)
        elif op == "shutdown":
            sink({"id": rid, "event": "bye", "final": True})
            self.done.set()

    def serve_stdin(self):
        stdin = open(0, "rb", closefd=False)
        for raw in LineReader(stdin.readline):
            self.handle(raw, self.emit)
            if self.done.is_set():
                return "shutdown"
        return "end of input"

    # ---- optional loopback TCP ------------------------------------------------------------------------------
    def listen(self, host, port, token):
        sock = socket.create_server((host, port))
        log(f"listening on {host}:{sock.getsockname()[1]}")
        threading.Thread(target=self._accept, args=(sock, token), daemon=True).start()
        return sock

    def _accept(self, sock, token):
        while not self.done.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn, token), daemon=True).start()

    def _client(self, conn, token):
        lock = threading.Lock()
        alive = [True]

        def sink(event):
            try:
                with lock:
                    conn.sendall(encode_event(event))
            except OSError:
                alive[0] = False

        with conn:
            reader = LineReader(conn.makefile("rb").readline)
            authed = False
            for raw in reader:
                if not alive[0] or self.done.is_set():
                    return
                if not authed:
                    try:
                        req = parse_line(raw) if raw is not None else None
                    except RequestError:
                        req = None
                    good = (isinstance(req, dict) and req.get("op") == "hello" and isinstance(req.get("token"), str)
                            and hmac.compare_digest(req["token"].encode(), token.encode()))
                    if not good:
                        sink({"id": req.get("id") if isinstance(req, dict) else None, "event": "error",
                              "code": "unauthorized", "message": "the first line must be a hello with the right token",
                              "final": True})
                        return
                    authed = True
                self.handle(raw, sink)


def parse_listen(value):
    """'127.0.0.1:PORT' / 'localhost:PORT' / '[::1]:PORT' -> (host, port); anything not loopback is refused."""
    from .cli import UserError
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UserError(f"--listen {value}: expected 127.0.0.1:PORT")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise UserError(f"--listen {value}: only loopback addresses (127.0.0.1, ::1) are accepted")
    return host, int(port)


def _watch_parent(server, parent):
    try:
        while not server.done.wait(0.5):
            if os.getppid() != parent:
                log("parent process is gone: shutting down")
                break
    finally:
        server.done.set()  # whatever happened in this thread, the service must not outlive its parent


def _read_stdin(server):
    try:
        log(f"stdin: {server.serve_stdin()}")
    finally:
        server.done.set()  # EOF, or an error writing to a client that is gone: shut down either way


def run_server(args):
    from .cli import UserError
    listen = None
    if args.listen:
        listen = parse_listen(args.listen)
        token = args.token or os.environ.get("MOTIONMILL_TOKEN")
        if not token:
            raise UserError("--listen needs --token (or MOTIONMILL_TOKEN): refusing to accept unauthenticated clients")
    # The event stream owns the real stdout; anything else printed (tqdm, warnings, C libraries) goes to stderr.
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    server = Server(args, out)
    server.service.start()
    if listen:
        server.listen(listen[0], listen[1], token)
    threading.Thread(target=_watch_parent, args=(server, os.getppid()), daemon=True).start()
    reader = threading.Thread(target=_read_stdin, args=(server,), daemon=True)
    reader.start()
    log(f"ready (protocol {PROTOCOL_VERSION}, pid {os.getpid()})")
    server.done.wait()
    try:
        server.service.stop()
        server.service.worker.join(timeout=30)
        log("stopped")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    finally:
        # The stdin reader may still be blocked in read(): leave without interpreter teardown, which could wait on it.
        os._exit(0)
