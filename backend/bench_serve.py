"""`python -m backend bench-serve`: throughput of N single-prompt requests queued at once (the service batches
them) against the same N sent one after another, through the real service and client. Writes the figures to
the "Service" section of docs/benchmarks.md (other sections are kept)."""
import os
import platform
import sys
import tempfile
import time

import numpy as np

from motionmill_common.bench_report import update_section


def _client(model_dir, device, batch_size, cache):
    from motionmill_common.client import BackendClient
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    args = ["--batch-size", str(batch_size)] + (["--cache", cache] if cache else [])
    return BackendClient(sys.executable, cwd=root, model_dir=model_dir, device=device, extra_args=args)


def _run(client, prompts, out, seconds, together):
    t0 = time.perf_counter()
    results = []
    if together:
        ids = [client.generate(p, out=out, seconds=seconds, name=f"{'b' if together else 's'}{i:03d}")
               for i, p in enumerate(prompts)]
        results = [client.wait(rid, timeout=3600) for rid in ids]
    else:
        for i, p in enumerate(prompts):
            results.append(client.wait(client.generate(p, out=out, seconds=seconds, name=f"s{i:03d}"), timeout=3600))
    return time.perf_counter() - t0, results


def run_bench_serve(a):
    from .random_model import SIZES, build_preset
    n = a.requests
    prompts = [f"a person walks forward and turns, take {i}" for i in range(n)]
    with tempfile.TemporaryDirectory(prefix="motionmill-bench-serve-") as tmp:
        model_dir = a.model_dir or build_preset(os.path.join(tmp, "model"), a.size)
        client = _client(model_dir, a.device, a.batch_size, a.cache)
        try:
            loaded = client.call("load", timeout=600)
            client.wait(client.generate("warm up", out=tmp, seconds=a.seconds), timeout=600)
            t_serial, serial = _run(client, prompts, os.path.join(tmp, "serial"), a.seconds, together=False)
            t_batched, batched = _run(client, prompts, os.path.join(tmp, "batched"), a.seconds, together=True)
        finally:
            client.close()
        same = all(np.array_equal(np.load(s["paths"][0])["tokens"], np.load(b["paths"][0])["tokens"])
                   for s, b in zip(serial, batched))
        rows = sorted({r["timing"]["batch_rows"] for r in batched})
    speedup = t_serial / t_batched
    shape = SIZES.get(a.size, {}) if not a.model_dir else {}
    what = a.model_dir or f"random {a.size} ({shape.get('n_layer')} layers, E {shape.get('n_embd')}, {shape.get('n_head')} heads, vocab 64002)"
    body = (f"`python -m backend bench-serve --size {a.size} --requests {n} --seconds {a.seconds:g} --batch-size {a.batch_size}"
            f"{' --device ' + a.device if a.device != 'auto' else ''}` on {loaded['device']} "
            f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores), {time.strftime('%Y-%m-%d')}.\n\n"
            f"Model: {what}, {loaded['dtype']}, quant {loaded['quant']}. {n} single-prompt greedy requests of "
            f"{a.seconds:g} s each through `backend serve` and the add-on's client (motionmill_common.client).\n\n"
            "| mode | wall time (s) | clips/s |\n|---|---|---|\n"
            f"| one by one (each waits for the last) | {t_serial:.1f} | {n / t_serial:.2f} |\n"
            f"| queued together (service batches them; rows per pass {rows}) | {t_batched:.1f} | {n / t_batched:.2f} |\n\n"
            f"Speed-up: **{speedup:.1f}×**. Batched clips identical to the one-by-one clips: {'yes' if same else 'NO'}.")
    print(body)
    if a.out:
        update_section(a.out, "Service", body)
        print(f"written to {a.out}", file=sys.stderr)
    return 0 if same else 1
