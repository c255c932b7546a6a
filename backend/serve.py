"""`python -m backend serve`: the JSON-lines service the Blender add-on and pipeline scripts talk to.

Requests come one per line on stdin (and, with --listen 127.0.0.1:PORT and a token, from loopback TCP clients
that first send {"id": .., "op": "hello", "token": T}); events go one per line to stdout (or that socket).
Logs go to stderr: anything else that prints to fd 1 is redirected there so the event stream stays clean.

Every client (stdin/stdout is one, each TCP connection another) has its own bounded outbox and writer thread,
so a client that stops reading stalls nobody: it is dropped once its outbox is full or its socket accepts
nothing for WRITE_TIMEOUT_S. A client that goes away has its requests cancelled. Stdin EOF ends the stdin
client only; the service ends on `shutdown`, SIGTERM/SIGINT, or when its parent process dies (and at stdin EOF
when there is no listener, as nobody could reach it any more).

No line is handled under a lock while it reads a file a client named (generate's continue_from is read before), so a
slow or hostile file stalls only its own client. At most --max-connections listener connections are served at once
(one more is answered `busy`); out of file descriptors, the listener waits and retries instead of giving up.
"""
import errno
import hmac
import ipaddress
import os
import queue
import signal
import socket
import sys
import threading
import time

from motionmill_common.folders import default_model_dir

from . import __version__
from .options import UserError, warn
from motionmill_common.protocol import MAX_LINE_BYTES, OPS, PROTOCOL_VERSION, RequestError, encode_event, error_event, parse_line
from .service_queue import Service, internal_message, log, log_internal

CAPABILITIES = ["batching", "cancel", "progress", "idle_unload", "oom_backoff", "listen", "clip_events"]
OUTBOX_EVENTS = 10000     # unread events one client may hold back (a 64-clip request sends a few hundred)
WRITE_TIMEOUT_S = 10.0    # a socket that accepts no byte for this long is dropped
HELLO_TIMEOUT_S = 10.0    # a connection must authenticate within this
MIN_TOKEN_CHARS = 16
POLL_S = 0.5              # how often a blocked socket read or write looks at its deadline
MAX_CONNECTIONS = 64      # default --max-connections: each connection holds a thread, a socket and an outbox
ACCEPT_BACKOFF_S = 0.1    # out of descriptors: the pending connections wait in the backlog this long per retry
_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


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


class Channel:
    """One client's way out: a bounded outbox drained by its own writer thread. send() never blocks."""

    def __init__(self, name, write, close=lambda: None, remote=False, on_gone=lambda channel: None):
        self.name, self.remote = name, remote
        self._write, self._close, self._on_gone = write, close, on_gone
        self.outbox = queue.Queue(OUTBOX_EVENTS)
        self.gone = threading.Event()       # no more events go out
        self._once = threading.Lock()
        self.writer = threading.Thread(target=self._drain, name=f"writer {name}", daemon=True)
        self.writer.start()

    def send(self, event):
        if self.gone.is_set():
            return
        try:
            self.outbox.put_nowait(encode_event(event))
        except queue.Full:
            self.drop(f"it left {OUTBOX_EVENTS} events unread")

    def end(self):
        """No more requests from this client: cancel its work, send what is queued (its cancellations too), close."""
        self._on_gone(self)
        try:
            self.outbox.put(None, timeout=WRITE_TIMEOUT_S)
        except queue.Full:
            self.drop("it stopped reading")

    def drop(self, why):
        with self._once:
            if self.gone.is_set():
                return
            self.gone.set()
        log(f"{self.name}: dropped: {why}")
        self._on_gone(self)
        self._close()

    def _drain(self):
        while not self.gone.is_set():
            data = self.outbox.get()
            if data is None:
                break
            try:
                self._write(data)
            except (OSError, ValueError) as err:
                self.drop(f"cannot write to it ({err})")
                return
        with self._once:
            self.gone.set()
        self._close()


class SocketLines:
    """read_line(limit) over a socket with a short timeout, so a read can give up at a deadline (the hello's)."""

    def __init__(self, conn, stop, deadline=None):
        self.conn, self.stop, self.deadline = conn, stop, deadline
        self.buf = b""

    def read_line(self, limit):
        while True:
            end = self.buf.find(b"\n", 0, limit)
            if end >= 0 or len(self.buf) >= limit:
                cut = end + 1 if end >= 0 else limit
                line, self.buf = self.buf[:cut], self.buf[cut:]
                return line
            if self.stop() or (self.deadline is not None and time.monotonic() > self.deadline):
                return b""
            try:
                chunk = self.conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                line, self.buf = self.buf, b""
                return line
            self.buf += chunk


def _send_all(conn, data):
    """sendall that gives up when the peer accepts no byte for WRITE_TIMEOUT_S (socket timeout: POLL_S)."""
    view, last = memoryview(data), time.monotonic()
    while view:
        try:
            sent = conn.send(view)
        except TimeoutError:
            if time.monotonic() - last > WRITE_TIMEOUT_S:
                raise OSError(f"no byte accepted for {WRITE_TIMEOUT_S:g} s") from None
            continue
        view, last = view[sent:], time.monotonic()


def _refuse(conn, message):
    """One `busy` error line to a connection the service will not serve, then close it."""
    try:
        conn.settimeout(POLL_S)
        conn.sendall(encode_event(error_event(None, "busy", message)))
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        conn.close()


def _hang_up(conn):
    try:
        conn.shutdown(socket.SHUT_RDWR)   # wakes the reader; the socket is closed when the reader leaves
    except OSError:
        pass


class Server:
    def __init__(self, args, out_stream, token=None, listening=False):
        self.args = args
        self.token = token
        self.listening = listening
        self.allow_remote_shutdown = bool(getattr(args, "allow_remote_shutdown", False))
        self.lock = threading.Lock()      # one line is handled at a time, whichever client sent it
        self.service = Service(args.model_dir or default_model_dir(), args.device, args.dtype, args.quant,
                               batch_size=args.batch_size, cache=args.cache, compile=args.compile,
                               idle_unload_s=(args.idle_unload_minutes or 0) * 60,
                               memory_limit_mb=args.memory_limit_mb)
        self.done = threading.Event()
        self.channels = set()
        self.max_connections = getattr(args, "max_connections", None) or MAX_CONNECTIONS
        self.connections = 0              # open --listen connections, under _count_lock
        self._count_lock = threading.Lock()

        def write_stdout(data):
            out_stream.write(data)
            out_stream.flush()
        self.stdin_channel = self._open_channel("stdin", write_stdout, self._stdin_gone)

    def _open_channel(self, name, write, gone, close=lambda: None, remote=False):
        def on_gone(channel):
            self.service.cancel_owner(channel)
            gone(channel)
        channel = Channel(name, write, close, remote, on_gone)
        with self.lock:
            self.channels.add(channel)
        return channel

    def _stdin_gone(self, channel):
        if not self.listening:
            self.done.set()               # nobody can reach the service any more

    def handle(self, raw, channel):
        """One line -> events on `channel`. Never raises; every error carries the request's id once it has one."""
        rid = None
        try:
            if raw is None:
                raise RequestError("line_too_long", f"line longer than {MAX_LINE_BYTES} bytes was skipped")
            req = parse_line(raw)
            rid = req["id"]
            if req["op"] == "generate":
                # Checked, and its files read, outside the lock: a FIFO or a huge file a client names stalls only it.
                job = self.service.prepare_generate(req, channel)
                with self.lock:
                    self.service.enqueue(job)
                return
            with self.lock:
                self._dispatch(req, channel)
        except RequestError as err:
            channel.send(error_event(err.request_id if err.request_id is not None else rid, err.code, err.message))
        except Exception as err:   # a bug must not take the service down, nor leave a client waiting
            log_internal(f"handling request {rid!r} from {channel.name}")
            channel.send(error_event(rid, "internal", internal_message(err)))

    def _dispatch(self, req, channel):
        op, rid = req["op"], req["id"]
        if op == "hello":
            channel.send({"id": rid, "event": "hello", "version": __version__, "protocol": PROTOCOL_VERSION,
                          "device": self.service.device_name(), "model": self.service.model_name(),
                          "loaded": self.service.model is not None, "ops": list(OPS), "capabilities": CAPABILITIES,
                          "max_line_bytes": MAX_LINE_BYTES, "batch_size": self.service.batch_size,
                          "pid": os.getpid(), "final": True})
        elif op == "status":
            channel.send({"id": rid, "event": "status", **self.service.status(), "final": True})
        elif op == "cancel":
            state = self.service.cancel(req["target"], rid, channel)
            channel.send({"id": rid, "event": "cancel", "target": req["target"], "state": state, "final": True})
        elif op in ("load", "unload"):
            self.service.submit_control(op, req, channel)
        elif op == "shutdown":
            if channel.remote and not self.allow_remote_shutdown:
                raise RequestError("forbidden", "shutdown is accepted only from the service's own stdin, or from "
                                   "listeners when it was started with --allow-remote-shutdown", rid)
            channel.send({"id": rid, "event": "bye", "final": True})
            self.done.set()

    def serve_stdin(self):
        stdin = open(0, "rb", closefd=False)
        for raw in LineReader(stdin.readline):
            self.handle(raw, self.stdin_channel)
            if self.done.is_set():
                return "shutdown"
        return "end of input"

    def flush(self, timeout):
        """Let every writer send what it holds (the answers to a shutdown) before the process leaves."""
        deadline = time.monotonic() + timeout
        with self.lock:
            channels = list(self.channels)
        for channel in channels:
            try:
                channel.outbox.put(None, timeout=max(0.0, deadline - time.monotonic()))
            except queue.Full:
                continue
        for channel in channels:
            channel.writer.join(max(0.0, deadline - time.monotonic()))

    # ---- optional loopback TCP ------------------------------------------------------------------------------
    def listen(self, host, port):
        sock = socket.create_server((host, port))
        log(f"listening on {host}:{sock.getsockname()[1]}")
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()
        return sock

    def _accept(self, sock):
        """Accept connections until the service stops. Out of file descriptors, it logs once and retries after a
        short pause (the connections wait in the backlog) instead of giving up: the listener must outlive a flood."""
        starved = False
        while not self.done.is_set():
            try:
                conn, peer = sock.accept()
            except OSError as err:
                if err.errno not in _OUT_OF_DESCRIPTORS and err.errno != errno.ECONNABORTED:
                    log(f"listener stopped: {err}")
                    return
                if err.errno != errno.ECONNABORTED and not starved:
                    log(f"cannot accept connections ({err.strerror}): retrying until descriptors are free")
                    starved = True
                time.sleep(ACCEPT_BACKOFF_S)
                continue
            if starved:
                log("accepting connections again")
                starved = False
            self._admit(conn, f"client {peer[0]}:{peer[1]}")

    def _admit(self, conn, name):
        """Serve `conn` on its own thread, or answer `busy` and close it when --max-connections are open."""
        with self._count_lock:
            full = self.connections >= self.max_connections
            if not full:
                self.connections += 1
        if full:
            _refuse(conn, f"the service already has {self.max_connections} connections (--max-connections); "
                          "try again when one closes")
            return
        try:
            threading.Thread(target=self._client, args=(conn, name), daemon=True).start()
        except RuntimeError as err:    # no thread can be started now: the same as being full
            with self._count_lock:
                self.connections -= 1
            _refuse(conn, f"the service cannot take a connection now ({err}); try again later")

    def _client(self, conn, name):
        try:
            self._serve_connection(conn, name)
        finally:
            conn.close()
            with self._count_lock:
                self.connections -= 1

    def _serve_connection(self, conn, name):
        conn.settimeout(POLL_S)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # one small event per send: no 40 ms Nagle waits
        channel = self._open_channel(name, lambda data: _send_all(conn, data), lambda channel: None,
                                     close=lambda: _hang_up(conn), remote=True)
        lines = SocketLines(conn, lambda: channel.gone.is_set() or self.done.is_set(),
                            deadline=time.monotonic() + HELLO_TIMEOUT_S)
        try:
            authed = False
            for raw in LineReader(lines.read_line):
                if not authed:
                    if not self._authenticate(raw, channel):
                        return
                    authed, lines.deadline = True, None
                self.handle(raw, channel)
            if not authed:
                log(f"{name}: no hello within {HELLO_TIMEOUT_S:g} s: closed")
        except Exception:   # whatever a client sends, the service goes on
            log_internal(f"serving {name}")
        finally:
            channel.end()
            channel.writer.join(WRITE_TIMEOUT_S + 1)
            with self.lock:
                self.channels.discard(channel)

    def _authenticate(self, raw, channel):
        rid = None
        try:
            req = parse_line(raw) if raw is not None else None
        except RequestError as err:
            req, rid = None, err.request_id
        if isinstance(req, dict):
            rid = req["id"]
        good = (isinstance(req, dict) and req["op"] == "hello" and isinstance(req.get("token"), str)
                and hmac.compare_digest(req["token"].encode("utf-8"), self.token.encode("utf-8")))
        if not good:
            channel.send(error_event(rid, "unauthorized", "the first line must be a hello with the right token"))
        return good


def parse_listen(value):
    """'127.0.0.1:PORT' / 'localhost:PORT' / '[::1]:PORT' -> (host, port); anything not loopback is refused."""
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
    except Exception:
        log_internal("reading stdin")
    finally:
        server.stdin_channel.end()     # EOF ends this client only (the service too when there is no listener)


def read_token(args):
    """The --listen secret: MOTIONMILL_TOKEN or --token-file keep it out of /proc/<pid>/cmdline; --token still works."""
    token = None
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except (OSError, UnicodeDecodeError) as err:
            raise UserError(f"--token-file {args.token_file}: cannot read it ({err})") from None
    elif args.token:
        warn("--token is visible to every user in the process list; use MOTIONMILL_TOKEN or --token-file")
        token = args.token
    else:
        token = os.environ.get("MOTIONMILL_TOKEN")
    if not token:
        raise UserError("--listen needs a token (MOTIONMILL_TOKEN or --token-file): refusing to accept unauthenticated "
                        "clients")
    if len(token) < MIN_TOKEN_CHARS:
        raise UserError(f"the --listen token has {len(token)} characters; use at least {MIN_TOKEN_CHARS} "
                        "(e.g. python -c 'import secrets; print(secrets.token_urlsafe())')")
    return token


def run_server(args, listen=None, token=None):
    """Serve until shutdown. `args`: the parsed `serve` command; listen: (host, port) or None; token: its secret."""
    # The event stream owns the real stdout; anything else printed (tqdm, warnings, C libraries) goes to stderr.
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    server = Server(args, out, token, listening=bool(listen))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: server.done.set())
    server.service.start()
    if listen:
        server.listen(*listen)
    threading.Thread(target=_watch_parent, args=(server, os.getppid()), daemon=True).start()
    threading.Thread(target=_read_stdin, args=(server,), daemon=True).start()
    log(f"ready (protocol {PROTOCOL_VERSION}, pid {os.getpid()})")
    while not server.done.wait(POLL_S):   # a timed wait lets the signal handlers run promptly
        pass
    try:
        server.service.stop()
        server.service.worker.join(timeout=30)
        server.flush(timeout=5)
        log("stopped")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    finally:
        # The stdin reader may still be blocked in read(): leave without interpreter teardown, which could wait on it.
        os._exit(0)
