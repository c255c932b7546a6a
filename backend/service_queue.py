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
import types

import torch

from .protocol import RequestError


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


class GenerateRequest:
    def __init__(self, rid, sink, prompts, opts, jobs, out, name):
        self.rid, self.sink, self.prompts, self.opts, self.jobs = rid, sink, prompts, opts, jobs
        self.out, self.name = out, name
        self.received = time.monotonic()
        self.started = None
        self.cancelled = False
        self.cancel_step = None  # the decoding step under way when a running request was cancelled
        self.finished = False   # a final event went out
        self.clips = {}         # job index -> Clip
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


class Control:
    def __init__(self, rid, sink, op, fields):
        self.rid, self.sink, self.op, self.fields = rid, sink, op, fields


class Service:
    def __init__(self, model_dir, device="auto", dtype=None, quant=None, batch_size=16, cache=None,
                 idle_unload_s=0, memory_limit_mb=None, batch_window_s=0.05):
        self.defaults = dict(model_dir=model_dir, device=device, dtype=dtype, quant=quant)
        self.batch_size = max(1, int(batch_size))
        self.cache = cache
        self.batch_window_s = batch_window_s
        self.idle_unload_s = idle_unload_s or 0
        self.memory_limit_mb = memory_limit_mb
        self.model = None
        self.loaded_with = None
        self.config = None
        self.cond = threading.Condition()
        self.queue = []
        self.running = []
        self.pending_ids = set()
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
    def _claim(self, rid):
        if rid in self.pending_ids:
            raise RequestError("duplicate_id", f"request id {rid!r} is already queued or running", rid)
        self.pending_ids.add(rid)

    def model_config(self, rid):
        if self.config is None:
            from models.manifest import ModelDirError, load_config
            try:
                self.config = load_config(self.defaults["model_dir"])
            except (ModelDirError, OSError) as err:
                raise RequestError("model_unavailable", str(err), rid) from None
        return self.config

    def submit_generate(self, obj, sink):
        from .cli import UserError, _check_writable, sampling_options
        from .generation import expand_variations
        rid = obj["id"]
        cfg = self.model_config(rid)
        a = types.SimpleNamespace(sampling=obj.get("sampling"), temperature=obj.get("temperature"),
                                  top_k=obj.get("top_k", 0), top_p=obj.get("top_p", 1.0),
                                  max_tokens=obj.get("max_tokens"), min_tokens=obj.get("min_tokens", 0),
                                  seconds=obj.get("seconds"), min_seconds=obj.get("min_seconds"))
        try:
            opts = sampling_options(a, cfg)
        except (UserError, ValueError) as err:
            raise RequestError("bad_request", f"generate: {str(err).replace('--', '')}", rid) from None
        try:
            _check_writable(obj["out"])
        except UserError as err:
            raise RequestError("bad_output", str(err), rid) from None
        long = None
        if "timeline" in obj or "continue_from" in obj:
            long = self._long_jobs(obj, rid)
            prompts = list(dict.fromkeys(p for segments, _, _ in long[0] for _, p in segments))
            jobs = [(" | ".join(p for _, p in segments), s, v) for segments, s, v in long[0]]
        else:
            prompts = [obj["prompt"]] if "prompt" in obj else list(obj["prompts"])
            jobs = expand_variations(prompts, obj.get("variations", 1), obj.get("seed"))
        name = obj.get("name") or "clip-" + re.sub(r"[^A-Za-z0-9_.-]", "_", str(rid))[:64]
        req = GenerateRequest(rid, sink, prompts, opts, jobs, obj["out"], name)
        req.long = long
        with self.cond:
            if self.stopping:
                raise RequestError("shutting_down", "the service is shutting down", rid)
            self._claim(rid)
            self.queue.append(req)
            position = len(self.queue)
            self.cond.notify_all()
        req.send("progress", phase="queued", step=0, total=opts.max_tokens, position=position)

    def _long_jobs(self, obj, rid):
        """(per job (segments, seed, variation), source Motion or None, context seconds) for a timeline or a
        continuation request, with its files read now so that a bad one is refused at once."""
        from .generation import expand_variations
        from .long_motion import CONTEXT_SECONDS, load_source, parse_timeline
        try:
            if "timeline" in obj and ("seconds" in obj or "min_seconds" in obj):
                raise ValueError("a timeline gives each segment its seconds: drop 'seconds'/'min_seconds'")
            source = load_source(obj["continue_from"]) if "continue_from" in obj else None
            context = obj.get("context_seconds", CONTEXT_SECONDS)
            if not 0 < context <= 10:
                raise ValueError(f"'context_seconds' must be 0-10, got {context:g}")
            if "timeline" in obj:
                segments = parse_timeline(obj["timeline"], "timeline")
                runs = [(segments, s, v) for _, s, v in expand_variations(["timeline"], obj.get("variations", 1), obj.get("seed"))]
            else:
                prompts = [obj["prompt"]] if "prompt" in obj else list(obj["prompts"])
                runs = [([(None, p)], s, v) for p, s, v in expand_variations(prompts, obj.get("variations", 1), obj.get("seed"))]
        except ValueError as err:
            raise RequestError("bad_request", f"generate: {err}", rid) from None
        return runs, source, context

    def submit_control(self, op, obj, sink):
        with self.cond:
            if self.stopping:
                raise RequestError("shutting_down", "the service is shutting down", obj["id"])
            self._claim(obj["id"])
            self.queue.append(Control(obj["id"], sink, op, obj))
            self.cond.notify_all()

    def cancel(self, target, rid):
        """Cancel a queued request now, or a running one at its next decoding step. Returns its state."""
        with self.cond:
            for item in self.queue:
                if isinstance(item, GenerateRequest) and item.rid == target:
                    self.queue.remove(item)
                    self.pending_ids.discard(target)
                    item.cancelled = True
                    item.finish("error", code="cancelled", message=f"request {target!r} was cancelled before it started")
                    return "queued"
            for item in self.running:
                if item.rid == target and not item.finished:
                    item.cancel_step = self.current_step
                    item.cancelled = True
                    return "running"
        raise RequestError("not_found", f"no queued or running generate request with id {target!r}", rid)

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
            if isinstance(item, GenerateRequest):
                item.finish("error", code="shutting_down", message="the service shut down before this request ran")
            else:
                item.sink({"id": item.rid, "event": "error", "code": "shutting_down",
                           "message": "the service shut down before this request ran", "final": True})

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
                    self._control(batch)
                else:
                    self._run_batch(batch)
            except Exception as err:  # never let the worker die: report and go on
                log(f"internal error: {type(err).__name__}: {err}")
                items = batch if isinstance(batch, list) else []
                for req in items:
                    req.finish("error", code="internal", message=f"{type(err).__name__}: {err}")
                if isinstance(batch, Control):
                    batch.sink({"id": batch.rid, "event": "error", "code": "internal",
                                "message": f"{type(err).__name__}: {err}", "final": True})
            finally:
                with self.cond:
                    for req in (batch if isinstance(batch, list) else [batch]):
                        self.pending_ids.discard(req.rid)
                    self.running = []
                    self.last_active = time.monotonic()

    def _control(self, item):
        if item.op == "unload":
            was = self.model is not None
            self._unload()
            item.sink({"id": item.rid, "event": "unloaded", "was_loaded": was, "final": True})
            return
        f = item.fields
        params = {k: f.get(k, self.defaults[k]) for k in self.defaults}
        if params["model_dir"] != self.defaults["model_dir"]:
            self.config = None
        self.defaults.update(params)
        already = self.model is not None and self.loaded_with == params
        try:
            self._ensure_model(lambda phase: item.sink({"id": item.rid, "event": "progress", "phase": phase}))
        except RequestError as err:
            item.sink({"id": item.rid, "event": "error", "code": err.code, "message": err.message, "final": True})
            return
        item.sink({"id": item.rid, "event": "loaded", "model": self.model.name, "device": str(self.model.device),
                   "dtype": str(self.model.dtype).removeprefix("torch."), "quant": self.model.quant,
                   "notes": list(self.model.notes), "already": already, "final": True})

    def _ensure_model(self, say):
        from models.checkpoint import CheckpointError
        from models.loader import load_model
        from models.manifest import ModelDirError
        if self.model is not None and self.loaded_with == self.defaults:
            return self.model
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
        self._apply_memory_limit()
        return model

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
                    req.finish("error", code="shutting_down", message="the service shut down while this request ran")
                else:
                    extra = {} if req.cancel_step is None else {"steps_after_cancel": self.current_step - req.cancel_step}
                    req.finish("error", code="cancelled", message=f"request {req.rid!r} was cancelled", **extra)

    def _run_batch(self, batch):
        for req in batch:
            req.started = time.monotonic()
        try:
            model = self._ensure_model(lambda phase: [r.send("progress", phase=phase) for r in batch if not r.cancelled])
        except RequestError as err:
            for req in batch:
                req.finish("error", code=err.code, message=err.message)
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
                clips = self._decode(model, chunk, batch[0].opts)
            except Exception as err:
                if not is_out_of_memory(err):
                    raise
                free_memory()
                self.stats["oom_retries"] += 1
                if len(chunk) == 1:
                    req = chunk[0][0]
                    log(f"out of memory at batch size 1 for {req.rid!r}")
                    req.finish("error", code="out_of_memory", message="out of memory even one clip at a time: "
                               "free GPU memory, use a shorter duration or a smaller --quant")
                    continue
                size = max(1, len(chunk) // 2)
                log(f"out of memory at batch size {len(chunk)}: retrying at {size}")
                continue
            if clips is None:      # every request in the chunk was cancelled
                continue
            for (req, k), clip in zip(chunk, clips):
                req.clips[k] = clip
            for req in {id(r): r for r, _ in chunk}.values():
                if len(req.clips) == len(req.jobs) and not req.finished:
                    self._write(req, model, len(chunk), t_start)
        self._report_cancelled(batch)

    def _decode(self, model, chunk, opts):
        from .generation import generate
        from .sampling import Cancelled
        reqs = list({id(r): r for r, _ in chunk}.values())
        last = [0.0]

        def on_step(start, size, step, total):
            self.current_step += 1
            now = time.monotonic()
            if step in (1, total) or now - last[0] >= 0.25:
                last[0] = now
                for r in reqs:
                    if not r.cancelled:
                        r.send("progress", phase="decoding", step=step, total=total,
                               clips=len(r.jobs), clips_done=len(r.clips))

        def should_stop():
            self._report_cancelled(reqs)
            return self.stopping or all(r.cancelled for r in reqs)

        for r in reqs:
            r.send("progress", phase="encoding", step=0, total=opts.max_tokens)
        try:
            if reqs[0].long is not None:
                return [self._decode_long(model, r, k, opts, on_step, should_stop) for r, k in chunk]
            return generate(model, [r.jobs[k] for r, k in chunk], opts, len(chunk), self.cache, on_step, should_stop)
        except Cancelled:
            return None

    def _decode_long(self, model, req, k, opts, on_step, should_stop):
        from .long_motion import FADE_FRAMES, generate_long
        runs, source, context = req.long
        segments, seed, variation = runs[k]
        clip = generate_long(model, segments, opts, seed, source, context, FADE_FRAMES, self.cache, on_step,
                             should_stop, log)
        clip.variation = variation
        return clip

    def _write(self, req, model, batch_rows, t_start):
        from retarget.interchange import save_motion
        req.send("progress", phase="writing", step=req.opts.max_tokens, total=req.opts.max_tokens)
        clips_out = []
        try:
            for k in range(len(req.jobs)):
                clip = req.clips[k]
                path = os.path.abspath(os.path.join(req.out, f"{req.name}_{k:03d}.npz"))
                save_motion(path, clip.motion, features=clip.features, tokens=clip.tokens, prompt=clip.prompt,
                            seed=clip.seed, variation=clip.variation, model=model.name, **clip.info)
                clips_out.append({"path": path, "prompt": clip.prompt, "seed": clip.seed, "variation": clip.variation,
                                  "frames": int(clip.motion.rotations.shape[0]), "tokens": int(len(clip.tokens))})
                if "segment_starts" in clip.info:
                    clips_out[-1]["segment_starts"] = clip.info["segment_starts"].tolist()
        except (OSError, ValueError) as err:
            req.finish("error", code="write_failed", message=f"cannot write clips to {req.out}: {err}")
            return
        now = time.monotonic()
        self.stats["clips"] += len(clips_out)
        req.finish("result", paths=[c["path"] for c in clips_out], clips=clips_out, model=model.name,
                   timing={"queued_s": round(req.started - req.received, 4), "generate_s": round(now - t_start, 4),
                           "total_s": round(now - req.received, 4), "batch_rows": batch_rows})
