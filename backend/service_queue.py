"""The generation service behind `backend serve`: one worker thread, a request queue, batching, cancel, OOM backoff.

Compatible queued generate requests (same sampling options and duration) run as one decoding pass. Rows of a
batch are independent (backend.sampling), so each request gets exactly the clips it would get alone.
"""
import gc
import os
import re
import resource
import sys
import threading
import time
import traceback

import torch

from .options import OptionError, UserError, check_device, check_writable, sampling_options
from motionmill_common.protocol import RequestError, error_event


def log(message):
    """One line to stderr; a closed stderr (the parent died) must not stop the service from shutting down."""
    try:
        print(f"serve: {message}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def is_out_of_memory(err):
    """CUDA's OutOfMemoryError, or the CPU allocator failing (a RuntimeError from DefaultCPUAllocator)."""
    if isinstance(err, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and ("can't allocate memory" in text or "not enough memory" in text
                                              or "out of memory" in text.lower())


def free_memory():
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _vm_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def internal_message(err):
    """The one line a client gets for a bug; the traceback goes to the service log (log_internal)."""
    first = (str(err).splitlines() or [""])[0][:200]
    return f"internal error ({type(err).__name__}: {first}); the service log has the details"


def log_internal(what):
    log(f"internal error {what}:\n{traceback.format_exc().rstrip()}")


class GenerateRequest:
    def __init__(self, rid, owner, prompts, opts, jobs, out, name):
        # owner: the client channel that sent it (its .send gets the events); only it may cancel the request
        self.rid, self.owner, self.sink = rid, owner, owner.send
        self.prompts, self.opts, self.jobs = prompts, opts, jobs
        self.out, self.name = out, name
        self.received = time.monotonic()
        self.started = None
        self.cancelled = False
        self.cancel_step = None  # the decoding step under way when a running request was cancelled
        self.finished = False   # a final event went out
        self.clips = {}         # job index -> what its "clip" event said (the file is on disk)
        self.long = None        # a timeline or continuation: (per job (segments, seed, variation), source, context s)

    @property
    def key(self):
        if self.long is not None:  # decoded on its own, segment by segment
            return ("long", id(self))
        o = self.opts
        return (o.temperature, o.top_k, o.top_p, o.min_tokens, o.max_tokens)

    def send(self, event, **fields):
        self.sink({"id": self.rid, "event": event, **fields})

    def finish(self, event, **fields):
        if not self.finished:
            self.finished = True
            self.send(event, final=True, **fields)

    def fail(self, code, message, **fields):
        if not self.finished:
            self.finished = True
            self.sink({**error_event(self.rid, code, message), **fields})


class Control:
    def __init__(self, rid, owner, op, fields):
        self.rid, self.owner, self.sink, self.op, self.fields = rid, owner, owner.send, op, fields
        self.finished = False

    def fail(self, code, message):
        if not self.finished:
            self.finished = True
            self.sink(error_event(self.rid, code, message))


class Service:
    def __init__(self, model_dir, device="auto", dtype=None, quant=None, batch_size=16, cache=None,
                 idle_unload_s=0, memory_limit_mb=None, batch_window_s=0.05, compile="auto"):
        self.defaults = dict(model_dir=model_dir, device=device, dtype=dtype, quant=quant)
        self.batch_size = max(1, int(batch_size))
        self.cache = cache
        self.compile = compile     # "auto" | "on" | "off": backend.decode_step.wants_compile
        self.decode_step = None    # the loaded model's compiled step (None: eager)
        self.batch_window_s = batch_window_s
        self.idle_unload_s = idle_unload_s or 0
        self.memory_limit_mb = memory_limit_mb
        self.model = None
        self.loaded_with = None
        self.config = None
        self.cond = threading.Condition()
        self.queue = []
        self.running = []
        self.pending_ids = set()   # (owner, id): ids are per client, so clients cannot collide or probe each other
        self.stopping = False
        self.last_active = time.monotonic()
        self.started = time.monotonic()
        self.current_step = 0
        self.stats = {"batches": 0, "clips": 0, "oom_retries": 0}
        self._rlimit = None
        self.worker = threading.Thread(target=self._work, name="motionmill-worker", daemon=True)

    def start(self):
        self.worker.start()

    # ---- called from the protocol thread ----------------------------------------------------------------------
    def _claim(self, owner, rid):
        if (owner, rid) in self.pending_ids:
            raise RequestError("duplicate_id", f"request id {rid!r} is already queued or running", rid)
        self.pending_ids.add((owner, rid))

    def model_config(self, rid):
        if self.config is None:
            from models.manifest import ModelDirError, load_config
            try:
                self.config = load_config(self.defaults["model_dir"])
            except (ModelDirError, OSError) as err:
                raise RequestError("model_unavailable", str(err), rid) from None
        return self.config

    def submit_generate(self, obj, owner):
        self.enqueue(self.prepare_generate(obj, owner))

    def prepare_generate(self, obj, owner):
        """Validate one request completely, and read the files it names, before it can join a batch: a bad one must
        fail alone. Takes no lock, so the caller must not hold one that other clients need: the file a client names
        may be slow to read (a big capture) and must stall no one else."""
        from .generation import expand_variations
        rid = obj["id"]
        cfg = self.model_config(rid)
        try:
            opts = sampling_options(cfg, sampling=obj.get("sampling"), temperature=obj.get("temperature"),
                                    top_k=obj.get("top_k", 0), top_p=obj.get("top_p", 1.0),
                                    seconds=obj.get("seconds"), min_seconds=obj.get("min_seconds"),
                                    max_tokens=obj.get("max_tokens"), min_tokens=obj.get("min_tokens", 0),
                                    warn=lambda message: log(f"{rid!r}: {message}"))
        except OptionError as err:
            raise RequestError("bad_request", f"generate: {err.message}", rid) from None
        try:
            check_writable(obj["out"], warn=log)
        except UserError as err:
            raise RequestError("bad_output", str(err), rid) from None
        long = None
        if "timeline" in obj or "continue_from" in obj:
            long = self._long_jobs(obj, rid, cfg)
            prompts = list(dict.fromkeys(p for segments, _, _ in long[0] for _, p in segments))
            jobs = [(" | ".join(p for _, p in segments), s, v) for segments, s, v in long[0]]
        else:
            prompts = [obj["prompt"]] if "prompt" in obj else list(obj["prompts"])
            jobs = expand_variations(prompts, obj.get("variations", 1), obj.get("seed"))
        name = obj.get("name") or "clip-" + re.sub(r"[^A-Za-z0-9_.-]", "_", str(rid))[:64]
        req = GenerateRequest(rid, owner, prompts, opts, jobs, obj["out"], name)
        req.long = long
        return req

    def enqueue(self, req):
        """Queue a request from prepare_generate."""
        rid, owner, opts = req.rid, req.owner, req.opts
        with self.cond:
            if self.stopping:
                raise RequestError("shutting_down", "the service is shutting down", rid)
            self._claim(owner, rid)
            self.queue.append(req)
            position = len(self.queue)
            self.cond.notify_all()
        req.send("progress", phase="queued", step=0, total=opts.max_tokens, position=position)

    def _long_jobs(self, obj, rid, cfg):
        """(per job (segments, seed, variation), source Motion or None, context seconds) for a timeline or a
        continuation request, with its files read now so that a bad one is refused at once."""
        from .generation import expand_variations
        from retarget.continuation import MAX_CONTEXT_SECONDS
        from .long_motion import CONTEXT_SECONDS, load_source, parse_timeline
        try:
            if "timeline" in obj and ("seconds" in obj or "min_seconds" in obj):
                raise ValueError("a timeline gives each segment its seconds: drop 'seconds'/'min_seconds'")
            context = obj.get("context_seconds", CONTEXT_SECONDS)
            if not 0 < context <= MAX_CONTEXT_SECONDS:
                raise ValueError(f"'context_seconds' must be 0-{MAX_CONTEXT_SECONDS:g}, got {context:g}")
            source = load_source(obj["continue_from"], context, cfg.frames_per_token) if "continue_from" in obj else None
            if "timeline" in obj:
                segments = parse_timeline(obj["timeline"], "timeline")
                runs = [(segments, s, v) for _, s, v in expand_variations(["timeline"], obj.get("variations", 1), obj.get("seed"))]
            else:
                prompts = [obj["prompt"]] if "prompt" in obj else list(obj["prompts"])
                runs = [([(None, p)], s, v) for p, s, v in expand_variations(prompts, obj.get("variations", 1), obj.get("seed"))]
        except ValueError as err:
            raise RequestError("bad_request", f"generate: {err}", rid) from None
        return runs, source, context

    def submit_control(self, op, obj, owner):
        if op == "load" and "device" in obj:
            try:
                check_device(obj["device"])
            except OptionError as err:
                raise RequestError("bad_request", f"load: {err.message}", obj["id"]) from None
            except ValueError as err:   # ModelDirError: a CUDA device this machine does not have
                raise RequestError("bad_request", f"load: {err}", obj["id"]) from None
        with self.cond:
            if self.stopping:
                raise RequestError("shutting_down", "the service is shutting down", obj["id"])
            self._claim(owner, obj["id"])
            self.queue.append(Control(obj["id"], owner, op, obj))
            self.cond.notify_all()

    def cancel(self, target, rid, owner):
        """Cancel one of `owner`'s requests: a queued one now, a running one at its next decoding step. Returns its
        state. Another client's request is "not found", as if it did not exist."""
        with self.cond:
            for item in self.queue:
                if isinstance(item, GenerateRequest) and item.rid == target and item.owner is owner:
                    self._drop_queued(item, f"request {target!r} was cancelled before it started")
                    return "queued"
            for item in self.running:
                if item.rid == target and item.owner is owner and not item.finished:
                    item.cancel_step = self.current_step
                    item.cancelled = True
                    return "running"
        raise RequestError("not_found", f"no queued or running generate request of yours with id {target!r}", rid)

    def cancel_owner(self, owner):
        """A client went away: cancel all its requests (running ones stop between steps and write nothing more)."""
        with self.cond:
            for item in [i for i in self.queue if i.owner is owner]:
                self._drop_queued(item, "the client disconnected")
            for item in self.running:
                if item.owner is owner and not item.finished:
                    item.cancel_step = self.current_step
                    item.cancelled = True

    def _drop_queued(self, item, why):   # with self.cond held
        if item not in self.queue:
            return      # already dropped: failing it dropped its client, which cancelled it (same thread, RLock)
        self.queue.remove(item)
        self.pending_ids.discard((item.owner, item.rid))
        item.cancelled = True
        item.fail("cancelled", why)

    def status(self):
        with self.cond:
            queued = [item.rid for item in self.queue]
            running = [item.rid for item in self.running if not item.finished]
        memory = {"rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
        if torch.cuda.is_available():
            memory["cuda_allocated_mb"] = round(torch.cuda.memory_allocated() / 2 ** 20, 1)
        return {"loaded": self.model is not None, "model": self.model_name(), "device": self.device_name(),
                "queued": queued, "running": running, "batch_size": self.batch_size,
                "uptime_s": round(time.monotonic() - self.started, 3), "memory": memory, **self.stats}

    def model_name(self):
        if self.model is not None:
            return self.model.name
        d = self.defaults["model_dir"]
        return os.path.basename(os.path.normpath(d)) if d else None

    def device_name(self):
        if self.model is not None:
            return str(self.model.device)
        from models.loader import resolve_device
        try:
            return str(resolve_device(self.defaults["device"]))
        except ValueError:
            return self.defaults["device"]

    def stop(self):
        """Cancel everything; the worker stops within one decoding step."""
        with self.cond:
            self.stopping = True
            dropped, self.queue = self.queue, []
            for item in self.running:
                item.cancelled = True
            self.cond.notify_all()
        for item in dropped:
            item.fail("shutting_down", "the service shut down before this request ran")

    # ---- the worker thread -------------------------------------------------------------------------------------
    def _work(self):
        while True:
            with self.cond:
                while not self.queue and not self.stopping:
                    timeout = None
                    if self.model is not None and self.idle_unload_s > 0:
                        timeout = self.last_active + self.idle_unload_s - time.monotonic()
                        if timeout <= 0:
                            self._unload()
                            log(f"idle for {self.idle_unload_s / 60:g} min: model unloaded")
                            continue
                    self.cond.wait(timeout)
                if self.stopping:
                    return
                head = self.queue[0]
                wait = head.received + self.batch_window_s - time.monotonic() if isinstance(head, GenerateRequest) else 0
                if wait > 0 and len(head.jobs) < self.batch_size:
                    self.cond.wait(wait)     # a short window for requests sent together to join one batch
                    continue
                item = self.queue.pop(0)
                if isinstance(item, GenerateRequest):
                    batch, jobs = [item], len(item.jobs)
                    for other in list(self.queue):
                        if not isinstance(other, GenerateRequest):
                            break   # never reorder across load/unload
                        if other.key == item.key and jobs + len(other.jobs) <= self.batch_size:
                            self.queue.remove(other)
                            batch.append(other)
                            jobs += len(other.jobs)
                    self.running = batch
                else:
                    batch = item
            try:
                if isinstance(batch, Control):
                    self._guarded(self._control, batch, [batch])
                elif not self._guarded(self._run_batch, batch, batch if len(batch) == 1 else []) and len(batch) > 1:
                    # Something no check foresaw failed the batch: retry its requests alone, so only the guilty one errors.
                    for req in batch:
                        if not req.finished:
                            with self.cond:
                                self.running = [req]
                            self._guarded(self._run_batch, [req], [req])
            finally:
                with self.cond:
                    for req in (batch if isinstance(batch, list) else [batch]):
                        self.pending_ids.discard((req.owner, req.rid))
                    self.running = []
                    self.last_active = time.monotonic()

    def _guarded(self, run, arg, blame):
        """run(arg); on a bug: log its traceback, send `blame` one line each (the worker never dies). True if it ran."""
        try:
            run(arg)
            return True
        except Exception as err:
            log_internal(f"running {', '.join(repr(r.rid) for r in (arg if isinstance(arg, list) else [arg]))}")
            for item in blame:
                item.fail("internal", internal_message(err))
            return False

    def _control(self, item):
        if item.op == "unload":
            was = self.model is not None
            self._unload()
            item.sink({"id": item.rid, "event": "unloaded", "was_loaded": was, "final": True})
            return
        f = item.fields
        params = {k: f.get(k, self.defaults[k]) for k in self.defaults}
        already = self.model is not None and self.loaded_with == params
        try:
            self._load_as(params, lambda phase: item.sink({"id": item.rid, "event": "progress", "phase": phase}))
        except RequestError as err:
            item.fail(err.code, f"load: {err.message}")
            return
        item.sink({"id": item.rid, "event": "loaded", "model": self.model.name, "device": str(self.model.device),
                   "dtype": str(self.model.dtype).removeprefix("torch."), "quant": self.model.quant,
                   "notes": list(self.model.notes), "already": already,
                   "compiled": self.decode_step is not None and not self.decode_step.failed, "final": True})

    def _load_as(self, params, say):
        """Load the model with `params`, all or nothing: a refused load leaves the settings and the loaded model as
        they were. While a model is loaded, what can be checked cheaply (the model directory's manifest, the device,
        dtype and quant) is checked before it is freed; a load that fails after that brings it back."""
        previous, had_model = (dict(self.defaults), self.config), self.model is not None
        if had_model and params != self.loaded_with:
            config = self._check_load(params)
        elif params["model_dir"] != self.defaults["model_dir"]:
            config = None             # read from the new directory when it is needed
        else:
            config = self.config
        self.defaults, self.config = dict(params), config
        try:
            self._ensure_model(say)
        except BaseException:
            self.defaults, self.config = previous
            if had_model and self.model is None:
                try:
                    self._ensure_model(lambda phase: None)
                    log("the new model could not be loaded: the previous one is loaded again")
                except Exception:
                    log_internal("loading the previous model again")
            raise

    def _check_load(self, params):
        """The model directory's config for `params`, or a RequestError naming what is wrong."""
        from models.loader import resolve_device, resolve_precision
        from models.manifest import ModelDirError, load_config
        try:
            config = load_config(params["model_dir"])
            resolve_precision(resolve_device(params["device"]), params["dtype"], params["quant"])
        except (ModelDirError, OSError, RuntimeError) as err:   # RuntimeError: torch's, for a device name
            raise RequestError("model_unavailable", str(err)) from None
        return config

    def _ensure_model(self, say):
        if self.model is not None and self.loaded_with == self.defaults:
            return self.model
        say("loading")           # before the imports: the first load spends seconds importing torch and transformers
        from models.checkpoint import CheckpointError
        from models.loader import load_model
        from models.manifest import ModelDirError
        self._unload()
        params = dict(self.defaults)
        t0 = time.monotonic()
        try:
            model = load_model(params["model_dir"], params["device"], params["dtype"], params["quant"], progress=say)
        except (ModelDirError, CheckpointError, OSError, ValueError) as err:
            raise RequestError("model_unavailable", f"cannot load the model: {err}") from None
        except Exception as err:
            if is_out_of_memory(err):
                free_memory()
                raise RequestError("out_of_memory", f"not enough memory to load the model ({err})") from None
            raise
        self.model, self.loaded_with, self.config = model, params, model.config
        for note in model.notes:
            log(note)
        log(f"loaded {model.name} on {model.device} in {time.monotonic() - t0:.1f} s")
        self.decode_step = self._prepare_decoding(model, say)
        self._apply_memory_limit()
        return model

    def _prepare_decoding(self, model, say):
        """Compile the decoding step at load, with the phase reported, so that the first Generate does not pay for
        it. A compile that fails leaves one log line and eager decoding."""
        from .decode_step import PREPARING_PHASE, make_decode_step
        step = make_decode_step(model.decoder, self.compile, self.cache, warn=log)
        if step is None:
            return None
        say(PREPARING_PHASE if model.device.type == "cuda" else "preparing the compiled decoder, first time only")
        seconds = step.prepare(batch_sizes=(1, 2))
        log("decoding eager" if step.failed else f"compiled decoding ready in {seconds:.1f} s")
        return step

    def _apply_memory_limit(self):
        """--memory-limit-mb: a real allocator limit for the working memory above the loaded model."""
        if not self.memory_limit_mb:
            return
        extra = int(self.memory_limit_mb * 2 ** 20)
        if self.model.device.type == "cuda":
            dev = self.model.device
            total = torch.cuda.get_device_properties(dev).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, (torch.cuda.memory_allocated(dev) + extra) / total), dev)
        else:
            if self._rlimit is None:
                self._rlimit = resource.getrlimit(resource.RLIMIT_AS)
            resource.setrlimit(resource.RLIMIT_AS, (_vm_bytes() + extra, self._rlimit[1]))
        log(f"working memory limited to {self.memory_limit_mb:g} MB above the model")

    def _unload(self):
        if self.model is None:
            return
        dev = self.model.device
        self.model = None
        self.decode_step = None
        self.loaded_with = None
        if self._rlimit is not None:
            resource.setrlimit(resource.RLIMIT_AS, self._rlimit)
            self._rlimit = None
        if self.memory_limit_mb and dev.type == "cuda":
            torch.cuda.set_per_process_memory_fraction(1.0, dev)
        free_memory()

    def _report_cancelled(self, reqs):
        for req in reqs:
            if req.cancelled and not req.finished:
                if self.stopping:
                    req.fail("shutting_down", "the service shut down while this request ran")
                else:
                    extra = {} if req.cancel_step is None else {"steps_after_cancel": self.current_step - req.cancel_step}
                    req.fail("cancelled", f"request {req.rid!r} was cancelled", **extra)

    def _run_batch(self, batch):
        for req in batch:
            req.started = time.monotonic()
        try:
            model = self._ensure_model(lambda phase: [r.send("progress", phase=phase) for r in batch if not r.cancelled])
        except RequestError as err:
            for req in batch:
                req.fail(err.code, err.message)
            return
        self.stats["batches"] += 1
        rows = [(req, k) for req in batch for k in range(len(req.jobs))]
        size = self.batch_size
        t_start = time.monotonic()
        while True:
            self._report_cancelled(batch)
            live = [(r, k) for r, k in rows if not r.finished and k not in r.clips]
            if not live or self.stopping:
                break
            chunk = live[:size]
            try:
                self._decode(model, chunk, batch[0].opts, len(chunk), t_start)
            except Exception as err:
                if not is_out_of_memory(err):
                    raise
                free_memory()
                self.stats["oom_retries"] += 1
                if len(chunk) == 1:
                    req = chunk[0][0]
                    log(f"out of memory at batch size 1 for {req.rid!r}")
                    req.fail("out_of_memory", "out of memory even one clip at a time: "
                             "free GPU memory, use a shorter duration or a smaller --quant")
                    continue
                size = max(1, len(chunk) // 2)
                log(f"out of memory at batch size {len(chunk)}: retrying at {size}")
                continue
        self._report_cancelled(batch)

    def _decode(self, model, chunk, opts, batch_rows, t_start):
        from .generation import iter_clips
        from .sampling import Cancelled
        reqs = list({id(r): r for r, _ in chunk}.values())
        last = [0.0]
        long = reqs[0].long is not None

        def on_step(start, size, step, total):
            """start, size: the rows this decoding pass makes; for a timeline or continuation (one clip at a time)
            start is the segment being made."""
            self.current_step += 1
            now = time.monotonic()
            if step in (1, total) or now - last[0] >= 0.25:
                last[0] = now
                for r in reqs:
                    if r.cancelled:
                        continue
                    mine = [k for q, k in chunk if q is r]
                    where = ({"segment": start, "segments": len(r.long[0][mine[0]][0])} if long
                             else {"pass_clips": len(mine)})
                    r.send("progress", phase="decoding", step=step, total=total, clips=len(r.jobs),
                           clips_done=len(r.clips), **where)

        def should_stop():
            self._report_cancelled(reqs)
            return self.stopping or all(r.cancelled for r in reqs)

        for r in reqs:
            r.send("progress", phase="encoding", step=0, total=opts.max_tokens)
        jobs = [r.jobs[k] for r, k in chunk]
        try:
            # Each clip is written, and announced, as soon as it is decoded: a kill loses only clips not yet made.
            if reqs[0].long is not None:  # a timeline or a continuation: decoded on its own, a job at a time
                clips = (self._decode_long(model, r, k, opts, on_step, should_stop) for r, k in chunk)
            else:
                clips = iter_clips(model, jobs, opts, len(chunk), self.cache, on_step, should_stop, self.decode_step)
            for (req, k), clip in zip(chunk, clips):
                if req.cancelled or req.finished:
                    continue      # cancelled: nothing more is written for it
                self._write_clip(req, k, clip, model)
                if len(req.clips) == len(req.jobs):
                    self._finish(req, model, batch_rows, t_start)
        except Cancelled:
            pass

    def _decode_long(self, model, req, k, opts, on_step, should_stop):
        from .long_motion import FADE_FRAMES, generate_long
        runs, source, context = req.long
        segments, seed, variation = runs[k]
        clip = generate_long(model, segments, opts, seed, source, context, FADE_FRAMES, self.cache, on_step,
                             should_stop, log)
        clip.variation = variation
        return clip

    def _write_clip(self, req, k, clip, model):
        from .generation import save_clip
        path = os.path.abspath(os.path.join(req.out, f"{req.name}_{k:03d}.npz"))
        req.send("progress", phase="writing", step=req.opts.max_tokens, total=req.opts.max_tokens,
                 clips=len(req.jobs), clips_done=len(req.clips))
        try:
            save_clip(path, clip, model.name)
        except (OSError, ValueError) as err:
            req.fail("write_failed", f"cannot write clips to {req.out}: {err}")
            return
        info = {"path": path, "prompt": clip.prompt, "seed": clip.seed, "variation": clip.variation,
                "frames": int(clip.motion.rotations.shape[0]), "tokens": int(len(clip.tokens))}
        if "segment_starts" in clip.info:
            info["segment_starts"] = [int(f) for f in clip.info["segment_starts"]]
        req.clips[k] = info
        self.stats["clips"] += 1
        req.send("clip", index=k, **info)

    def _finish(self, req, model, batch_rows, t_start):
        now = time.monotonic()
        clips_out = [req.clips[k] for k in range(len(req.jobs))]
        req.finish("result", paths=[c["path"] for c in clips_out], clips=clips_out, model=model.name,
                   timing={"queued_s": round(req.started - req.received, 4), "generate_s": round(now - t_start, 4),
                           "total_s": round(now - req.received, 4), "batch_rows": batch_rows})
