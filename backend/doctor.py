"""`python -m backend doctor`: what this machine and model directory can do, as a table or JSON."""
import importlib.metadata
import json
import platform

LIBRARIES = ("torch", "transformers", "bitsandbytes", "accelerate", "numpy", "PyWavelets", "smplx", "safetensors")


def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect(model_dir):
    import torch
    from models.loader import check_model_dir

    report = {"python": platform.python_version(), "platform": platform.platform(),
              "libraries": {name: _version(name) for name in LIBRARIES}}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        free, total = torch.cuda.mem_get_info(0)
        report["device"] = {"kind": "cuda", "name": props.name, "cuda": torch.version.cuda,
                            "vram_total_gb": round(total / 2 ** 30, 1), "vram_free_gb": round(free / 2 ** 30, 1),
                            "capability": f"{props.major}.{props.minor}"}
    else:
        from models.loader import packs_weights
        packed = packs_weights(torch.device("cpu"), torch.float32, "none")
        report["device"] = {"kind": "cpu", "name": platform.processor() or platform.machine(), "cuda": None,
                            "packed_weights": packed,
                            "note": "no CUDA GPU: generation runs on the CPU in float32"
                                    f"{', weights packed for oneDNN' if packed else ''} (slow for 3B/7B)"}
    model = {"dir": model_dir}
    try:  # "complete" only when it would load: both checkpoints opened and checked, not just present
        cfg = check_model_dir(model_dir)
        model.update(complete=True, missing=[], layers=cfg.t2m.n_layer, width=cfg.t2m.n_embd,
                     levels=list(cfg.tokenizer.levels), preset=cfg.t2m.preset)
    except ValueError as err:  # ModelDirError and CheckpointError: one line naming the file
        model.update(complete=False, missing=[str(err)])
    report["model"] = model
    return report


def format_table(report):
    rows = [("Python", report["python"]), ("Platform", report["platform"])]
    dev = report["device"]
    if dev["kind"] == "cuda":
        rows.append(("Device", f"{dev['name']} (CUDA {dev['cuda']}, compute {dev['capability']})"))
        rows.append(("VRAM", f"{dev['vram_free_gb']} GB free of {dev['vram_total_gb']} GB"))
    else:
        rows.append(("Device", f"CPU: {dev['note']}"))
    for name, version in report["libraries"].items():
        rows.append((name, version or "NOT INSTALLED"))
    m = report["model"]
    state = "complete" if m["complete"] else "INCOMPLETE: " + "; ".join(m["missing"])
    rows.append(("Model directory", f"{m['dir']}: {state}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def run_doctor(model_dir, as_json=False):
    report = collect(model_dir)
    print(json.dumps(report, indent=1) if as_json else format_table(report))
    return 0 if report["model"]["complete"] and all(report["libraries"][n] for n in ("torch", "transformers")) else 1
