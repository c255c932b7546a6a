"""`backend doctor --json` as rows for the preferences (no bpy: the layout code draws them)."""
import json


def doctor_report(text):
    """The report dict, or None when `text` is not one (nothing run yet, or the doctor's error output)."""
    try:
        report = json.loads(text)
    except (TypeError, ValueError):
        return None
    return report if isinstance(report, dict) and "device" in report and "model" in report else None


def doctor_rows(report):
    """(label, value) pairs: what the machine and the model directory can do, one fact a row."""
    dev, model = report["device"], report["model"]
    rows = [("Python", report.get("python", "?"))]
    if dev["kind"] == "cuda":
        rows += [("GPU", f"{dev['name']} (CUDA {dev['cuda']})"),
                 ("GPU memory", f"{dev['vram_free_gb']} GB free of {dev['vram_total_gb']} GB")]
    else:
        rows += [("GPU", "none found: the model runs on the CPU (slow for 3B/7B)")]
    for name, version in report.get("libraries", {}).items():
        if name in ("torch", "transformers", "bitsandbytes"):
            rows.append((name, version or "NOT INSTALLED"))
    state = "ready (checkpoints opened and checked)" if model.get("complete") else "NOT READY"
    rows.append(("Model", state))
    rows.append(("Folder", model.get("dir", "?")))
    for problem in model.get("missing", [])[:3]:
        rows.append(("Problem", problem))
    return rows
