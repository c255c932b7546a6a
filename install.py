#!/usr/bin/env python3
"""MotionMill's one set-up command.

    python3.11 install.py                 # .venv (CUDA torch where an NVIDIA GPU is found), add-on into Blender
    python3.11 install.py --weights 7b    # ... and download the 7B release (about 27 GB) into your data folder
    python3.11 install.py --from DIR      # ... adopt a release you already downloaded (reference layout or flat)
    python3.11 install.py --dev           # plus pytest, hypothesis and bpy, for the test suite
    python3.11 install.py --check         # one table: Python, torch/CUDA, VRAM, Blender, add-on, model directory
    python3.11 install.py --uninstall     # remove what this installer created, and nothing else

Standard library only: it runs before anything is installed. The weights step runs with .venv's Python, which
has the download libraries (gdown for Google Drive, huggingface_hub for the Hugging Face Hub). Re-running is safe
and fast: pip is skipped when .venv already has the pinned versions, finished downloads are kept and cut ones resume.
"""
import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import urllib.parse
import venv
import zipfile

ROOT = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(ROOT, ".venv")
if ROOT not in sys.path:  # motionmill_common and models.manifest are standard-library only
    sys.path.insert(0, ROOT)

# Versions tested together (see README, "The libraries it stands on").
TORCH_VERSION = "2.13.0"
RUNTIME = ["transformers==5.23.0", "accelerate==1.15.0", "bitsandbytes==0.50.2", "safetensors==0.8.0",
           "numpy==1.26.4", "PyWavelets==1.9.0", "smplx==0.1.28", "tqdm>=4.66",
           # the --weights step: gdown for the Google Drive checkpoints, huggingface_hub for flan-t5-xl and mean/std
           "gdown==6.5.1", "huggingface_hub==2.4.0"]
# The libraries the --weights step imports (it runs with .venv's Python: see download_weights()).
DOWNLOAD_LIBS = ("gdown", "huggingface_hub")
DEV = ["pytest==9.2.0", "hypothesis==6.170.15", "bpy==5.0.1"]
# Older bpy releases the tests marked `bpy` also run on (.ci/run makes .venv-bpy<tag> from each; not part of
# --dev): both LTS lines the add-on supports, the newest patch of each on PyPI. 4.2 has no slotted actions, 4.5
# has them beside Action.fcurves. The backend those tests start still runs from .venv.
BPY_LTS_TEST = {"42": ["pytest==9.2.0", "hypothesis==6.170.15", "numpy==1.26.4", "bpy==4.2.23"],
                "45": ["pytest==9.2.0", "hypothesis==6.170.15", "numpy==1.26.4", "bpy==4.5.15"]}
# Oldest driver CUDA version the pinned torch's CUDA wheels run on.
MIN_DRIVER_CUDA = (12, 6)
# PyTorch's CUDA wheel indexes, newest first: the installer takes the newest the driver supports.
TORCH_CUDA_BUILDS = [((13, 0), "cu130"), ((12, 8), "cu128"), ((12, 6), "cu126")]
TORCH_INDEX = "https://download.pytorch.org/whl/{}"

ADDON_MODULE = "motionmill"  # the add-on's folder name inside Blender's scripts/addons or extensions

# ---- the release files -------------------------------------------------------------------------------
# Google Drive file ids of the authors' checkpoints, from VankouF/MotionMillion-Codes,
# prepare/download_pretrained_models.sh (commit c026ec6 onwards), which fetches them with `gdown --fuzzy` as this
# installer does. "all" = trained on all.txt ("7B-all" is the authors' best model); the train.txt models are listed
# for reference (--url t2m-7B=https://drive.google.com/uc?id=ID).
GDRIVE_IDS = {
    "tokenizer": "1m8p5wDuZvpjsk1i2vZzA2Mxf9_oFVnmn",     # fsq_net_6000000.pth, the FSQ motion tokenizer
    "t2m-7B": "1kFdzFp_n1CfXChd2CFXjqJCL4TdEPbiJ",        # motionmillion_7B_all.pth
    "t2m-3B": "1wP_A4-fa213WqdkDPkaK34sKlJx1hBdP",        # motionmillion_3B_all.pth
    "t2m-7B-train": "1iwMDXEpATRRCxXGbXQewVax2HXpO9nOl",  # the 7B model trained on train.txt
    "t2m-3B-train": "1IV3HDG8MdZz_Dd9xqyoHvh70zi6sodl6",  # the 3B model trained on train.txt
}
GDRIVE_URL = "https://drive.google.com/uc?id={}"
# The 272-dim mean/std are committed in the code repository (commit 7ce95bd, "add mean std"), no login needed; they
# are checked against these hashes. The gated Hugging Face dataset InternRobotics/MotionMillion (accept its terms,
# set HF_TOKEN) holds copies under mean_std/ and is the fallback.
MEAN_STD_URL = ("https://raw.githubusercontent.com/VankouF/MotionMillion-Codes/7ce95bd864973fbe48326844b27740a2e9188a0a/"
                "dataset/MotionMillion/mean_std/vector_272/{}.npy")
MEAN_STD_SHA256 = {"mean": "373d0393f129cff4236b592709e79f4e8b7615d4083fe86308b8fcb43cf3a3c1",
                   "std": "dd7d6f9f8fbed043bbb51a523b0a96a7a37aeff70e3280b18cf64872d6669b40"}
MEAN_STD_REPO = "InternRobotics/MotionMillion"
MEAN_STD_FILES = {"mean": "mean_std/Mean.npy", "std": "mean_std/Std.npy"}
HF_ENDPOINT = "https://huggingface.co"
TEXT_ENCODER_REPO = "google/flan-t5-xl"
# Only what T5EncoderModel and its tokenizer read (not the PyTorch/TF/Flax duplicates of the weights): these, and
# the safetensors shards model.safetensors.index.json names.
TEXT_ENCODER_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                      "spiece.model"]
TEXT_ENCODER_INDEX = "model.safetensors.index.json"
# Attempts after a cut connection, per file, before a download step gives up (the next run resumes Drive files).
DOWNLOAD_RETRIES = 5
# What each size needs: disk for the release files, VRAM with NF4 decoder weights (see README).
NEEDS = {
    "7B": dict(disk_gb=16 + 11, vram_decoder_gb=5, vram_total_gb=7.5),
    "3B": dict(disk_gb=7 + 11, vram_decoder_gb=2.5, vram_total_gb=5),
}


class InstallError(Exception):
    """A failure the user can act on; printed as one line. A download's also carries `reason` (what went wrong) and
    `advice` (what to do) apart, for a caller that tries another source before it gives up."""

    def __init__(self, message, reason=None, advice=None):
        super().__init__(message)
        self.reason, self.advice = reason, advice


def download_error(label, reason, advice):
    return InstallError(f"{label}: {reason}; {advice}", reason, advice)


def say(message):
    print(f"[install] {message}", flush=True)


def warn(message):
    print(f"[install] warning: {message}", file=sys.stderr, flush=True)


# ---- environment ---------------------------------------------------------------------------------------

def venv_python(venv_dir=VENV):
    return os.path.join(venv_dir, "Scripts" if os.name == "nt" else "bin", "python.exe" if os.name == "nt" else "python")


def detect_os():
    return {"win32": "windows", "darwin": "macos"}.get(sys.platform, "linux")


def detect_gpu(run=subprocess.run):
    """(gpu name, driver CUDA version tuple or None) from nvidia-smi, or None where there is no NVIDIA GPU."""
    if shutil.which("nvidia-smi") is None and run is subprocess.run:
        return None
    try:
        out = run(["nvidia-smi"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    cuda = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", out.stdout)
    try:
        names = run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        name = names.stdout.strip().splitlines()[0] if names.returncode == 0 and names.stdout.strip() else "NVIDIA GPU"
    except (OSError, subprocess.TimeoutExpired):
        name = "NVIDIA GPU"
    return name, (int(cuda.group(1)), int(cuda.group(2))) if cuda else None


def torch_build(gpu, os_name):
    """(local version tag, pip index URL or None) of the torch wheel to install."""
    if os_name == "macos":
        return "", None  # PyPI's macOS wheel (CPU/MPS)
    if gpu is None:
        if os_name == "linux":
            return "cpu", TORCH_INDEX.format("cpu")  # not PyPI's Linux wheel, which carries CUDA
        return "", None  # PyPI's Windows wheel is the CPU build (no local tag)
    cuda = gpu[1] or MIN_DRIVER_CUDA
    for level, tag in TORCH_CUDA_BUILDS:
        if cuda >= level:
            return tag, TORCH_INDEX.format(tag)
    raise InstallError(f"the NVIDIA driver supports CUDA {cuda[0]}.{cuda[1]}, torch {TORCH_VERSION} needs "
                       f"{MIN_DRIVER_CUDA[0]}.{MIN_DRIVER_CUDA[1]} or newer: update the NVIDIA driver "
                       "(nvidia.com/drivers), or re-run with --cpu")


def check_python(version=None):
    version = tuple(version or sys.version_info[:3])
    if version[:2] != (3, 11):
        raise InstallError(f"Python {'.'.join(map(str, version))} found; MotionMill needs Python 3.11 "
                           "(Blender's own version): install Python 3.11 and run `python3.11 install.py`")


_SATISFIES = r"""
import importlib.metadata as m, json, re, sys
def key(v):
    return tuple(int(x) for x in re.findall(r"\d+", v.split("+")[0])[:4])
bad = []
for name, op, want, tag in json.loads(sys.argv[1]):
    try:
        have = m.version(name)
    except m.PackageNotFoundError:
        bad.append(name + " missing"); continue
    ok = key(have) == key(want) if op == "==" else key(have) >= key(want)
    if tag is not None and have.partition("+")[2] not in tag:
        ok, want = False, want + "+" + tag[0]
    if not ok:
        bad.append(f"{name} {have} (want {op}{want})")
print(json.dumps(bad))
"""


def venv_missing(py, packages, torch_tag):
    """What the venv at `py` lacks of `packages` (+ torch built for `torch_tag`); None if it cannot be asked."""
    reqs = [["torch", "==", TORCH_VERSION, [torch_tag] + ([""] if torch_tag in ("", "cpu") else [])]]
    for spec in packages:
        name, op, ver = re.match(r"^([A-Za-z0-9_.\-]+)(==|>=)(.+)$", spec).groups()
        reqs.append([name, op, ver, None])
    try:
        out = subprocess.run([py, "-c", _SATISFIES, json.dumps(reqs)], capture_output=True, text=True, timeout=120)
        return json.loads(out.stdout) if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError):
        return None


def make_venv(venv_dir):
    py = venv_python(venv_dir)
    if os.path.exists(py):
        say(f"using existing {venv_dir}")
        return py, False
    say(f"creating {venv_dir}")
    venv.EnvBuilder(with_pip=True).create(venv_dir)
    return py, True


def pip_install(py, packages, extra_args=()):
    cmd = [py, "-m", "pip", "install", "--disable-pip-version-check", *extra_args, *packages]
    say("pip install " + " ".join(packages) + (" " + " ".join(extra_args) if extra_args else ""))
    if subprocess.run(cmd).returncode != 0:
        raise InstallError(f"pip could not install {' '.join(packages)}; check your network connection and re-run "
                           "`python3.11 install.py` (finished packages are kept)")


def link_project(py, record):
    """Make the repository's packages (backend, models, retarget, blender_addon) importable by the venv's Python from
    any folder, so pipeline scripts need not run from the repository: a `motionmill.pth` naming the repository in
    the venv's site-packages (Python's own site mechanism; no copy, no build)."""
    out = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise InstallError(f"could not ask {py} for its site-packages folder; delete {os.path.dirname(os.path.dirname(py))} "
                           "and re-run `python3.11 install.py`")
    pth = os.path.join(out.stdout.strip(), "motionmill.pth")
    if os.path.isfile(pth) and open(pth).read().strip() == ROOT:
        return pth
    with open(pth, "w") as f:
        f.write(ROOT + "\n")
    record.add_file(pth, downloaded=False)
    say(f"linked {ROOT} into {os.path.basename(os.path.dirname(os.path.dirname(py)))}: `python -m backend` works from any folder")
    return pth


def index_reachable(url, timeout=5):
    """Whether the host of a package index answers at all (pip would otherwise retry it for minutes)."""
    host = urllib.parse.urlsplit(url).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def setup_env(a, gpu, os_name, record):
    tag, index = torch_build(gpu, os_name)
    if index and tag == "cpu" and not a.dry_run and not index_reachable(index):
        # PyPI (or a local mirror) still has torch; on Linux its wheel may carry CUDA libraries, but it runs on the CPU.
        say(f"PyTorch's CPU index ({index}) cannot be reached: taking torch {TORCH_VERSION} from the default index")
        tag, index = "", None
    packages = RUNTIME + (DEV if a.dev else [])
    # The local tag pins the build; PyTorch's index is an extra one, so PyPI (and any local mirror) still serve
    # everything else.
    torch_spec = f"torch=={TORCH_VERSION}" + (f"+{tag}" if tag else "")
    if a.dry_run:
        if os.path.exists(venv_python(a.venv)):
            missing = venv_missing(venv_python(a.venv), packages, tag)
            say(f"{a.venv} already has every pinned package: pip would be skipped" if missing == [] else
                f"{a.venv} lacks: " + ", ".join(missing or ["(could not ask its Python)"]))
        say(f"would install {torch_spec}" + (f" from {index}" if index else " from PyPI"))
        say("would install " + " ".join(packages))
        return venv_python(a.venv)
    py, created = make_venv(a.venv)
    if created:
        record.add("venv", a.venv)
    link_project(py, record)
    missing = venv_missing(py, packages, tag)
    if missing == []:
        say(f"{a.venv} already has torch {TORCH_VERSION}{'+' + tag if tag else ''} and every pinned package: "
            "skipping pip")
        return py
    if missing:
        say("to install or update: " + ", ".join(missing))
    pip_install(py, [torch_spec], ["--extra-index-url", index] if index else [])
    pip_install(py, packages)
    return py


# ---- downloads -----------------------------------------------------------------------------------------
# Two libraries do the downloading, each where it is the well-kept tool: gdown for the Google Drive checkpoints (and
# any plain URL given with --url), huggingface_hub for what lives on the Hugging Face Hub. Both are pinned in RUNTIME
# and so live in .venv, not in the bare Python that runs this file: the weights step runs with .venv's Python
# (main() starts `install.py --download-step` there) and imports them only then.

def _size(n):
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024


def _pins(names):
    return {spec.split("==")[0]: spec.split("==")[1] for spec in RUNTIME if spec.split("==")[0] in names}


def download_libs_missing():
    """What this Python lacks of the pinned download libraries ([] when it can run the weights step itself)."""
    import importlib.metadata as md
    missing = []
    for name, want in _pins(DOWNLOAD_LIBS).items():
        try:
            have = md.version(name)
        except md.PackageNotFoundError:
            missing.append(f"{name} missing")
            continue
        if have != want:
            missing.append(f"{name} {have} (want {want})")
    return missing


def model_libs_missing():
    """What this Python lacks to open checkpoints (torch); [] when it can verify a model directory itself."""
    import importlib.util
    return [] if importlib.util.find_spec("torch") else ["torch missing"]


def _looks_like_a_web_page(path):
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html"))


def partial_download(dest):
    """The `<name>XXXXXXXX.part` file gdown keeps beside `dest` for a download it could not finish (its own naming
    rule: the name, 8 random characters, .part), or None when there is none."""
    folder, name = os.path.split(os.path.abspath(dest))
    try:
        found = [n for n in os.listdir(folder)
                 if n.startswith(name) and n.endswith(".part") and len(n) == len(name) + 8 + len(".part")]
    except OSError:
        return None
    return os.path.join(folder, found[0]) if len(found) == 1 else None


def _no_connection(err):
    """Why a request got no answer at all ("Connection refused", "Temporary failure in name resolution", a timeout),
    or None when it did get one."""
    import requests
    for e in (err, err.__cause__, err.__context__):
        if isinstance(e, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
            m = re.findall(r"\[Errno -?\d+\] ([^'\")\]]+)", str(e))
            return m[-1].strip() if m else e.__class__.__name__
    return None


def fetch_url(url, dest, label, retries=None):
    """Download a Google Drive link (or any plain HTTP(S) URL) into `dest` with gdown. A cut connection is resumed
    with a Range request (up to `retries` times in this run; after that the `<name>XXXXXXXX.part` file gdown keeps
    beside `dest` is resumed by the next run), gdown's progress bar shows on stderr, and the bytes received must add
    up to the size the server announced. Every failure is one InstallError line, which names a partial file only
    when one is kept."""
    import gdown
    import requests
    from gdown.exceptions import DownloadError, FileURLRetrievalError
    retries = DOWNLOAD_RETRIES if retries is None else retries
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    say(f"{label}: downloading from {url}")
    host = urllib.parse.urlsplit(url).netloc or url

    def unfinished(reason, err):
        part = partial_download(dest)
        if part is not None:
            return download_error(label, reason, f"the partial file {os.path.basename(part)} "
                                  f"({_size(os.path.getsize(part))}) is kept beside it in {os.path.dirname(part)}: "
                                  "re-run the same command to resume it, or delete it to start over")
        why = _no_connection(err)
        if why is not None:
            return download_error(label, f"no connection to {host} ({why})",
                                  "check your connection (and proxy), then re-run the same command")
        return download_error(label, reason, "nothing was kept: re-run the same command to download it again")

    try:
        gdown.download(url, dest, quiet=False, resume=True, retries=retries, timeout=60, use_cookies=False)
    except FileURLRetrievalError:
        raise download_error(label, "Google Drive refused the file, most often because of its daily download quota "
                             "for a popular file", f"retry in a few hours, or open {url} in a browser, download it, "
                             "and re-run with --from FOLDER (or pass --url NAME=URL for another copy)") from None
    except DownloadError as err:  # fewer bytes than announced, a resume the server did not honour, retries spent, ...
        first = str(err).strip().splitlines()[0].rstrip(".")
        raise unfinished(f"broken download ({first})", err) from None
    except requests.exceptions.HTTPError as err:
        code = err.response.status_code if err.response is not None else "?"
        hint = ("it needs a login: download it in a browser and re-run with --from FOLDER" if code in (401, 403)
                else "check the link (--url NAME=URL) and your connection, then re-run")
        raise download_error(label, f"download failed with HTTP {code} from {url}", hint) from None
    except requests.exceptions.RequestException as err:
        raise unfinished(f"could not download {url} ({err.__class__.__name__})", err) from None
    except OSError as err:  # the disk, not the network (requests' errors are OSErrors too: caught above)
        raise download_error(label, f"could not write {dest} ({err.strerror or err})",
                             "check the disk and re-run the same command") from None
    if _looks_like_a_web_page(dest):
        os.remove(dest)
        raise download_error(label, "the server sent a web page instead of the file (a sign-in or quota page, or a "
                             "changed link)", f"open {url} in a browser, download it, and re-run with --from FOLDER")
    return dest


def _hub():
    """huggingface_hub, imported with its telemetry off."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import huggingface_hub
    return huggingface_hub


def fetch_hf(repo_id, filename, local_dir, endpoint, label, repo_type=None, revision="main"):
    """One file of a Hugging Face repository into `local_dir`/`filename` with huggingface_hub's hf_hub_download:
    it reads the size and ETag from the resolve endpoint (HEAD), resumes a cut connection in this run with a Range
    request, shows its progress bar, checks the size, and moves the file into place only when it is whole.
    Authentication is huggingface_hub's own ($HF_TOKEN or `hf auth login`). Every failure is one InstallError line."""
    import httpx2
    hub = _hub()
    from huggingface_hub import errors
    where = f"{endpoint.rstrip('/')}/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"
    # A plain tqdm bar shows on stderr whether or not it is a terminal, as gdown's does (huggingface_hub's own bar
    # hides itself off a terminal); HF_HUB_DISABLE_PROGRESS_BARS=1 still turns it off.
    import tqdm
    from huggingface_hub import constants
    bar = None if constants.HF_HUB_DISABLE_PROGRESS_BARS else tqdm.tqdm
    try:
        return hub.hf_hub_download(repo_id, filename, repo_type=repo_type, revision=revision, local_dir=local_dir,
                                   endpoint=endpoint.rstrip("/"), tqdm_class=bar)
    except errors.GatedRepoError:
        raise download_error(label, f"{where} is a gated Hugging Face repository", "accept its terms on its page, "
                             "set HF_TOKEN (or run `hf auth login`) and re-run, or pass --url NAME=URL for another "
                             "copy") from None
    except (errors.RepositoryNotFoundError, errors.RevisionNotFoundError, errors.RemoteEntryNotFoundError) as err:
        code = err.response.status_code if getattr(err, "response", None) is not None else "?"
        raise download_error(label, f"{filename} was not found in {where} (HTTP {code})", "if it needs a login set "
                             "HF_TOKEN, otherwise pass --url NAME=URL for another copy") from None
    except errors.HfHubHTTPError as err:
        code = err.response.status_code if err.response is not None else "?"
        raise download_error(label, f"download failed with HTTP {code} from {where}", "re-run later") from None
    except errors.LocalEntryNotFoundError as err:  # no answer from the endpoint at all
        cause = err.__cause__.__class__.__name__ if err.__cause__ else "no connection"
        raise download_error(label, f"could not reach {endpoint} ({cause})", "check your connection (or HF_ENDPOINT) "
                             "and re-run") from None
    except httpx2.TransportError as err:  # cut again and again, past huggingface_hub's retries
        raise download_error(label, f"the connection to {endpoint} kept dropping ({err.__class__.__name__})",
                             "re-run the same command (finished files are kept)") from None
    except OSError as err:
        if "Consistency check failed" in str(err):  # fewer or more bytes than the Hub announced
            first = str(err).strip().splitlines()[0].rstrip(".")
            raise download_error(label, f"broken download ({first})", "it was not kept: re-run to download it "
                                 "again") from None
        raise download_error(label, f"could not write it into {local_dir} ({err.strerror or err})",
                             "check the disk and re-run") from None


def fetch_text_encoder(folder, endpoint, record):
    """google/flan-t5-xl into `folder`: config, tokenizer files and the safetensors shards its index names."""
    os.makedirs(folder, exist_ok=True)
    record.add_dir(folder, downloaded=True)
    rel = os.path.basename(folder)
    wanted = TEXT_ENCODER_FILES + [TEXT_ENCODER_INDEX]
    index = os.path.join(folder, TEXT_ENCODER_INDEX)
    if not os.path.isfile(index):
        fetch_hf(TEXT_ENCODER_REPO, TEXT_ENCODER_INDEX, folder, endpoint, f"{rel}/{TEXT_ENCODER_INDEX}")
    try:
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
    except (OSError, ValueError, KeyError, AttributeError):
        os.remove(index)
        raise InstallError(f"{rel}/{TEXT_ENCODER_INDEX} is not a safetensors index (the repository changed?); "
                           "it was deleted: re-run, or adopt a downloaded copy with --from DIR") from None
    wanted += shards
    for name in wanted:
        if os.path.isfile(os.path.join(folder, name)):  # hf_hub_download moves a file into place only when whole
            continue
        fetch_hf(TEXT_ENCODER_REPO, name, folder, endpoint, f"{rel}/{name}")
    for name in wanted:
        record.add_file(os.path.join(folder, name), downloaded=True)
    meta = os.path.join(folder, ".cache")  # huggingface_hub's notes on what it downloaded
    if os.path.isdir(meta):
        record.add_file(meta, downloaded=True)


def url_overrides(pairs):
    out = {k[len("MOTIONMILL_URL_"):].lower().replace("_", "-"): v for k, v in os.environ.items()
           if k.startswith("MOTIONMILL_URL_") and v}
    for pair in pairs or ():
        key, sep, url = pair.partition("=")
        if not sep:
            raise InstallError(f"--url takes NAME=URL (tokenizer, t2m-7B, t2m-3B, mean, std), got {pair!r}")
        out[key] = url
    return out


def check_disk(path, need_bytes):
    probe = path
    while not os.path.exists(probe):
        probe = os.path.dirname(probe) or "."
    free = shutil.disk_usage(probe).free
    if free < need_bytes:
        raise InstallError(f"not enough disk space at {probe}: {_size(free)} free, the download needs about "
                           f"{_size(need_bytes)}; free some space or pass --model-dir on a larger disk")
    return free


def _sha256(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_statistics(key, dest, overrides, hf_endpoint):
    """mean.npy / std.npy: an --url override as given; else the code repository's committed copy, checked against
    its hash; else (unreachable, or another file) the gated Hugging Face dataset's copy. When both fail, the one
    error line says what happened at each, the code repository first."""
    rel = os.path.basename(dest)
    if overrides.get(key):
        return fetch_url(overrides[key], dest, rel)
    primary = urllib.parse.urlsplit(MEAN_STD_URL).netloc
    try:
        fetch_url(MEAN_STD_URL.format(key), dest, rel)
        if _sha256(dest) == MEAN_STD_SHA256[key]:
            return dest
        os.remove(dest)
        why = f"its copy at {primary} is not the published file (its SHA-256 differs)"
    except InstallError as err:
        why = err.reason or str(err)
    warn(f"{rel}: from the code repository, {why}; trying the Hugging Face dataset {MEAN_STD_REPO}")
    staging = os.path.join(os.path.dirname(dest), ".hf-download")
    try:
        got = fetch_hf(MEAN_STD_REPO, MEAN_STD_FILES[key], staging, hf_endpoint, rel, repo_type="dataset")
    except InstallError as err:
        if not any(n.endswith(".incomplete") for _, _, files in os.walk(staging) for n in files):
            shutil.rmtree(staging, ignore_errors=True)  # only huggingface_hub's bookkeeping: nothing to resume
        raise download_error(rel, f"not downloaded: from the code repository, {why}; from its fallback, the Hugging "
                             f"Face dataset {MEAN_STD_REPO}, {err.reason or err}",
                             err.advice or "re-run the same command") from None
    os.replace(got, dest)
    shutil.rmtree(staging, ignore_errors=True)
    part = partial_download(dest)  # the code repository's unfinished copy: the file is whole now
    if part is not None:
        os.remove(part)
    return dest


def download_weights(size, model_dir, overrides, hf_endpoint, record):
    """The release into `model_dir`; runs with a Python that has DOWNLOAD_LIBS and torch (see main()). A file already
    in place is kept (each library moves a file into place only when it is whole); a Drive file that arrives as a
    plain zip archive is unpacked."""
    from models.manifest import RELEASE_FILES
    needs = NEEDS[size]
    say(f"{size} release: about {needs['disk_gb']} GB of disk; VRAM about {needs['vram_decoder_gb']} GB for the "
        f"decoder (NF4), {needs['vram_total_gb']} GB with the T5-XL text encoder")
    check_disk(model_dir, needs["disk_gb"] * 10 ** 9)
    os.makedirs(model_dir, exist_ok=True)
    record.add_dir(model_dir, downloaded=True)

    def placed(rel):
        if os.path.isfile(os.path.join(model_dir, rel)):
            say(f"{rel}: already in place")
            return True
        return False

    # mean/std first (small: a failure shows before the big downloads)
    for key in ("mean", "std"):
        rel = RELEASE_FILES[key]
        if not placed(rel):
            record.add_file(fetch_statistics(key, os.path.join(model_dir, rel), overrides, hf_endpoint), downloaded=True)
    for key, role, rel in ((f"t2m-{size}", "t2m", RELEASE_FILES["t2m"][size]),
                           ("tokenizer", "tokenizer", RELEASE_FILES["tokenizer"])):
        if placed(rel):
            continue
        gid = GDRIVE_IDS.get(key)
        url = overrides.get(key) or (GDRIVE_URL.format(gid) if gid else None)
        if url is None:
            raise InstallError(f"no download link is known for {rel}: download it into {model_dir} (or pass --url "
                               f"{key}=URL) and re-run")
        dest = os.path.join(model_dir, rel)
        fetch_url(url, dest, rel)
        record.add_file(dest, downloaded=True)
        unpack_archive_into(dest, model_dir, {role: rel}, record)
    fetch_text_encoder(os.path.join(model_dir, RELEASE_FILES["text_encoder"]), hf_endpoint, record)


def model_step_in_venv(a, model_dir):
    """Run the weights step (--weights or --from) with .venv's Python, where torch, gdown and huggingface_hub are;
    returns its exit status."""
    py = venv_python(a.venv)
    if not os.path.exists(py):
        flag = f"--weights {a.weights}" if a.weights != "none" else f"--from {a.from_dir}"
        raise InstallError(f"the model step runs in {a.venv}, which does not exist: run `python3.11 install.py "
                           f"{flag}` without --no-env")
    cmd = [py, os.path.abspath(__file__), "--download-step", "--weights", a.weights, "--model-dir", model_dir,
           "--venv", a.venv, "--hf-endpoint", a.hf_endpoint]
    for pair in a.url or ():
        cmd += ["--url", pair]
    if a.from_dir:
        cmd += ["--from", a.from_dir] + (["--copy"] if a.copy else [])
    say(f"{'downloading' if a.weights != 'none' and not a.from_dir else 'checking the files'} with {py} "
        "(torch, gdown, huggingface_hub)")
    return subprocess.run(cmd, cwd=ROOT).returncode


def unpack_archive_into(path, model_dir, wanted, record):
    """When `path` is a plain zip archive (not torch's own zip format), unpack the release files it holds into
    `model_dir`, streamed, after checking the free disk space: each checkpoint is recognised by what it holds and
    placed under the release name of its role (`wanted` {role: name}: 'tokenizer', 't2m'; others by their release
    names), mean/std by name. The archive itself is then removed if this installer downloaded it (path in model_dir).
    Returns {role: placed path}."""
    from models.checkpoint import CHECKPOINT_KINDS, checkpoint_kind
    from models.manifest import RELEASE_FILES
    from models.release import CHECKPOINT_SUFFIXES
    if checkpoint_kind(path) != "archive":
        return {}
    with zipfile.ZipFile(path) as z:
        members = [i for i in z.infolist() if not i.is_dir() and
                   os.path.basename(i.filename).lower().endswith(CHECKPOINT_SUFFIXES + (".npy",))]
        check_disk(model_dir, sum(i.file_size for i in members) + (1 << 20))
        staging = os.path.join(model_dir, ".unpack-" + os.path.basename(path))
        os.makedirs(staging, exist_ok=True)
        placed = {}
        say(f"unpacking {os.path.basename(path)} ({', '.join(os.path.basename(i.filename) for i in members)})")
        for i in members:
            tmp = os.path.join(staging, os.path.basename(i.filename))
            with z.open(i) as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            name = os.path.basename(i.filename).lower()
            role = name[:-4] if name in ("mean.npy", "std.npy") else checkpoint_kind(tmp)
            if role not in (*CHECKPOINT_KINDS, "mean", "std") or role in placed:
                continue
            rel = wanted.get(role) or (RELEASE_FILES[role] if role in ("tokenizer", "mean", "std") else None)
            if rel is None:
                continue
            dest = os.path.join(model_dir, rel)
            if os.path.realpath(dest) != os.path.realpath(path) and os.path.lexists(dest):
                continue  # never replace a file the user already has
            os.replace(tmp, dest)
            record.add_file(dest, downloaded=True)
            placed[role] = dest
    shutil.rmtree(staging, ignore_errors=True)
    if os.path.dirname(os.path.abspath(path)) == os.path.abspath(model_dir) and os.path.exists(path) and \
            not any(os.path.samefile(path, p) for p in placed.values()):
        os.remove(path)
    if not placed:
        raise InstallError(f"{path}: a zip archive with no MotionMillion checkpoint inside "
                           f"({', '.join(i.filename for i in members[:4]) or 'no .pth files'})")
    return placed


# ---- adopting a downloaded release -----------------------------------------------------------------------

def adopt(src, model_dir, copy, record):
    """Link (or copy) the release files found under `src` into `model_dir` under the release names, unpacking zip
    archives; returns the release size read from the decoder checkpoint's shapes."""
    from models.manifest import RELEASE_FILES
    from models.release import find_release
    if not os.path.isdir(src):
        raise InstallError(f"--from {src}: no such folder")
    found = find_release(src)
    os.makedirs(model_dir, exist_ok=True)
    record.add_dir(model_dir, downloaded=False)
    unpacked = {}
    for archive in found.pop("archives", []):
        wanted = {"t2m": "t2m.unpacked.pth"}  # renamed below, once its size is known
        for role, path in unpack_archive_into(archive, model_dir, wanted, record).items():
            unpacked.setdefault(role, path)
    if "t2m" in unpacked and "t2m" not in found:
        from models.checkpoint import load_state_dict
        from models.release import t2m_size
        found["t2m"], found["t2m_size"] = unpacked["t2m"], t2m_size(load_state_dict(unpacked["t2m"], "trans"))
    for role in ("tokenizer", "mean", "std"):
        if role in unpacked and role not in found:
            found[role] = unpacked[role]
    size = found.get("t2m_size") or ("7B" if "t2m" not in found else None)
    if "t2m" in found and size is None:
        from models.manifest import PRESETS
        sizes = ", ".join(f"{s}: {p['n_layer']} layers of width {p['n_embd']}" for s, p in PRESETS.items())
        raise InstallError(f"{found['t2m']}: its decoder matches neither release size ({sizes}); it is not a "
                           "MotionMillion release checkpoint")
    need = {"tokenizer": RELEASE_FILES["tokenizer"], "t2m": RELEASE_FILES["t2m"][size],
            "text_encoder": RELEASE_FILES["text_encoder"] + "/ (config.json + *.safetensors)",
            "mean": RELEASE_FILES["mean"], "std": RELEASE_FILES["std"]}
    missing = [name for role, name in need.items() if role not in found]
    if missing:
        raise InstallError(f"--from {src}: could not find {', '.join(missing)} (looked at every checkpoint's "
                           "contents, in the reference's layout or flat); download the missing files, or use "
                           "--weights 7b|3b")
    targets = {"tokenizer": RELEASE_FILES["tokenizer"], "t2m": RELEASE_FILES["t2m"][size],
               "text_encoder": RELEASE_FILES["text_encoder"], "mean": RELEASE_FILES["mean"], "std": RELEASE_FILES["std"]}
    for role, rel in targets.items():
        srcp, dest = os.path.abspath(found[role]), os.path.join(model_dir, rel)
        if os.path.dirname(srcp) == os.path.abspath(model_dir) and srcp in unpacked.values():
            if srcp != os.path.abspath(dest):
                os.replace(srcp, dest)  # unpacked from an archive: a file of our own
                record.add_file(dest, downloaded=True)
            continue
        if os.path.lexists(dest):
            if os.path.realpath(dest) == os.path.realpath(srcp):
                continue
            raise InstallError(f"{dest} already exists and is not {srcp}: move it away or pick another --model-dir")
        how = _place(srcp, dest, copy)
        record.add_file(dest, downloaded=how == "copied")
        say(f"{rel}: {how} from {srcp}")
    return size


def _place(src, dest, copy):
    if not copy:
        try:
            os.symlink(src, dest, target_is_directory=os.path.isdir(src))
            return "linked"
        except OSError:  # Windows without developer mode: copy instead
            pass
    if os.path.isdir(src):
        shutil.copytree(src, dest)
    else:
        shutil.copy2(src, dest)
    return "copied"


def write_manifest(model_dir, size):
    """config.json for the release folder, written only once the folder is verified: both checkpoints opened and
    checked against the preset, the text encoder and mean/std read (models.loader.check_model_dir)."""
    from models.checkpoint import CheckpointError
    from models.loader import check_model_dir
    from models.manifest import ModelDirError, release_config, write_config
    cfg = release_config(model_dir, size)
    missing = cfg.missing_files()
    if missing:
        raise InstallError(f"{model_dir} is still missing {', '.join(rel for _, rel in missing)}: re-run to resume "
                           "the download")
    path = write_config(cfg)
    try:
        check_model_dir(model_dir)
    except (ModelDirError, CheckpointError) as err:
        os.remove(path)
        raise InstallError(f"the model directory would not load: {err}") from None
    return path


# ---- Blender ---------------------------------------------------------------------------------------------

def blender_candidates(os_name):
    home = os.path.expanduser("~")
    if os_name == "windows":
        pf = [os.environ.get("ProgramFiles", r"C:\Program Files"), os.environ.get("ProgramFiles(x86)", "")]
        out = []
        for base in filter(None, pf):
            out += sorted(_glob(os.path.join(base, "Blender Foundation", "Blender*", "blender.exe")))
        return out
    if os_name == "macos":
        return sorted(_glob("/Applications/Blender*.app/Contents/MacOS/Blender") +
                      _glob(os.path.join(home, "Applications", "Blender*.app", "Contents", "MacOS", "Blender")))
    out = [shutil.which("blender") or "", "/usr/bin/blender", "/usr/local/bin/blender", "/snap/bin/blender",
           "/var/lib/flatpak/exports/bin/org.blender.Blender",
           os.path.join(home, ".local/share/flatpak/exports/bin/org.blender.Blender")]
    out += sorted(_glob("/opt/blender*/blender") + _glob(os.path.join(home, "blender*", "blender")) +
                  _glob(os.path.join(home, "Applications", "blender*", "blender")))
    return out


def _glob(pattern):
    import glob
    return glob.glob(pattern)


def blender_version(exe):
    """(major, minor) from `blender --version`, else from the folder name, else None."""
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
        m = re.search(r"Blender (\d+)\.(\d+)", out.stdout)
        if m:
            return int(m.group(1)), int(m.group(2))
    except (OSError, subprocess.TimeoutExpired):
        pass
    m = re.search(r"[Bb]lender[-_ ]?(\d+)\.(\d+)", exe)
    return (int(m.group(1)), int(m.group(2))) if m else None


def find_blenders(explicit, os_name):
    """[(executable, (major, minor) or None)], each installation once."""
    paths = explicit or blender_candidates(os_name)
    out, seen = [], set()
    for p in paths:
        if not p or not os.path.isfile(p) or not os.access(p, os.X_OK):
            if explicit:
                raise InstallError(f"--blender {p}: not an executable file; pass the path of the blender program")
            continue
        real = os.path.realpath(p)
        if real in seen:
            continue
        seen.add(real)
        out.append((p, blender_version(p)))
    return out


def blender_user_dir(version, kind, os_name):
    """Blender's per-user folder for add-ons ('scripts') or extensions ('extensions') of one version."""
    env = {"scripts": "BLENDER_USER_SCRIPTS", "extensions": "BLENDER_USER_EXTENSIONS"}[kind]
    if os.environ.get(env):
        return os.environ[env]
    home = os.path.expanduser("~")
    base = {"windows": os.path.join(os.environ.get("APPDATA", os.path.join(home, "AppData", "Roaming")),
                                    "Blender Foundation", "Blender"),
            "macos": os.path.join(home, "Library", "Application Support", "Blender")}.get(
        os_name, os.path.join(os.environ.get("XDG_CONFIG_HOME", os.path.join(home, ".config")), "blender"))
    return os.path.join(base, f"{version[0]}.{version[1]}", kind)


def build_addon_zip(out_dir):
    """Build the add-on zips with `python -m blender_addon.package` (retarget/ bundled inside); returns the legacy
    add-on zip (folder `motionmill/`), which installs into every Blender from 4.2 to 5.0. The 4.2+ extension zip
    (blender_manifest.toml at its root) is written beside it: see extension_zip()."""
    os.makedirs(out_dir, exist_ok=True)
    out = subprocess.run([sys.executable, "-m", "blender_addon.package", "--out", out_dir], cwd=ROOT,
                         capture_output=True, text=True)
    # The package script prints the zips it wrote; older zips in out_dir are not ours to pick.
    legacy = [line.strip() for line in out.stdout.splitlines() if line.strip().endswith("-addon.zip")]
    if out.returncode != 0 or not legacy or not os.path.isfile(legacy[0]):
        raise InstallError(f"building the add-on failed: {(out.stderr or out.stdout).strip().splitlines()[-1:]}; "
                           "this checkout may be incomplete, re-clone it")
    return os.path.abspath(legacy[0])


def extension_zip(legacy_zip):
    """The extension zip built beside `legacy_zip`, or None."""
    path = legacy_zip[:-len("-addon.zip")] + "-extension.zip"
    return path if os.path.isfile(path) else None


def _enable_expr(module):
    return ("import addon_utils, bpy, sys\n"
            f"mod = addon_utils.enable({module!r}, default_set=True, persistent=True)\n"
            "bpy.ops.wm.save_userpref()\n"
            "sys.exit(0 if mod else 3)\n")


# Blender 4.2 brought extensions and `blender --command extension install-file`; from 4.2 on an extension is the
# format Blender itself installs, updates and lists (Preferences > Get Extensions), and the legacy scripts/addons
# route is kept only for compatibility. So every supported Blender (4.2+) gets the extension, installed by Blender's
# own command, and the legacy add-on is the fallback where that command fails (a build without it, a user_default
# repository that is disabled or read-only, ...).
EXTENSION_MIN_VERSION = (4, 2)
EXTENSION_REPO = "user_default"
_REPO_DIR_EXPR = ("import bpy\n"
                  "for r in bpy.context.preferences.extensions.repos:\n"
                  f"    if r.module == {EXTENSION_REPO!r}:\n"
                  "        print('MOTIONMILL_REPO_DIR=' + r.directory)\n")


def extension_dir(version, os_name):
    """Where `extension install-file -r user_default` puts the add-on: <user extensions>/user_default/motionmill
    (BLENDER_USER_EXTENSIONS overrides <user extensions>, as in Blender)."""
    return os.path.join(blender_user_dir(version, "extensions", os_name), EXTENSION_REPO, ADDON_MODULE)


def _ask_repo_dir(exe):
    """The user_default repository's folder as this Blender sees it (a custom directory set in its preferences)."""
    try:
        out = subprocess.run([exe, "--background", "--python-expr", _REPO_DIR_EXPR], capture_output=True, text=True,
                             timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"^MOTIONMILL_REPO_DIR=(.+)$", out.stdout, re.M)
    return m.group(1).strip() if m else None


def install_extension(exe, version, ext_zip, os_name):
    """Install (and enable) the extension with Blender's own `--command extension install-file`; returns the
    installed folder, or None when it did not install (the command's exit status is not enough: Blender 5.0 exits
    0 when the operator fails, so the installed folder is looked for)."""
    try:
        out = subprocess.run([exe, "--command", "extension", "install-file", "-r", EXTENSION_REPO, "--enable",
                              os.path.abspath(ext_zip)], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as err:
        return None, str(err)
    tail = ((out.stderr or "") + (out.stdout or "")).strip().splitlines()[-1:] or [f"exit status {out.returncode}"]
    if out.returncode != 0:
        return None, tail[0]
    candidates = [extension_dir(version, os_name)]
    if not os.path.isfile(os.path.join(candidates[0], "blender_manifest.toml")):
        repo = _ask_repo_dir(exe)
        if repo:
            candidates.append(os.path.join(repo, ADDON_MODULE))
    for target in candidates:
        if os.path.isfile(os.path.join(target, "blender_manifest.toml")):
            return target, None
    return None, tail[0]


def install_legacy(exe, version, zip_path, os_name):
    """Copy the legacy add-on into <user scripts>/addons and enable it; returns the installed folder."""
    with zipfile.ZipFile(zip_path) as z:
        top = z.namelist()[0].split("/")[0]
    addons = os.path.join(blender_user_dir(version, "scripts", os_name), "addons")
    target = os.path.join(addons, top)
    os.makedirs(addons, exist_ok=True)
    if os.path.isdir(target):
        shutil.rmtree(target)  # an older copy of our own add-on
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(addons)
    out = subprocess.run([exe, "--background", "--factory-startup", "--python-expr", _enable_expr(top)],
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        warn(f"copied the add-on into {addons} but Blender could not enable it; enable \"MotionMill\" in "
             "Edit > Preferences > Add-ons")
    return target


def install_addon(exe, version, zip_path, os_name, record):
    """Install (and enable) the add-on into one Blender: the extension on 4.2+, the legacy add-on as the fallback.
    Returns (installed folder, "extension" or "add-on")."""
    if version is None:
        raise InstallError(f"could not read {exe}'s version: install the add-on by hand, Edit > Preferences > "
                           f"Add-ons > Install from Disk… > {zip_path}")
    legacy_dir = os.path.join(blender_user_dir(version, "scripts", os_name), "addons", ADDON_MODULE)
    ext_zip = extension_zip(zip_path)
    if version >= EXTENSION_MIN_VERSION and ext_zip:
        target, why = install_extension(exe, version, ext_zip, os_name)
        if target:
            record.add("addon", target)
            # Both enabled would register the same operators twice: drop a legacy copy this installer made before.
            if os.path.abspath(legacy_dir) in record.data["addon"] and os.path.isdir(legacy_dir):
                shutil.rmtree(legacy_dir)
                record.data["addon"].remove(os.path.abspath(legacy_dir))
                record.save()
                say(f"removed the legacy add-on copy {legacy_dir} (replaced by the extension)")
            elif os.path.isdir(legacy_dir):
                warn(f"another MotionMill add-on is in {legacy_dir}: disable or remove it in Edit > Preferences > "
                     "Add-ons, so that only the extension is enabled")
            return target, "extension"
        warn(f"Blender could not install the extension ({why}): installing the legacy add-on instead")
    target = install_legacy(exe, version, zip_path, os_name)
    record.add("addon", target)
    return target, "add-on"


def setup_blender(a, os_name, py, record):
    blenders = find_blenders(a.blender, os_name)
    if not blenders:
        path = build_addon_zip(os.path.join(ROOT, "dist"))
        ext = extension_zip(path)
        warn(f"no Blender found: built {path}" + (f" and {ext}" if ext else "") + "; install Blender 4.2 or newer "
             "(blender.org), then in Blender use Edit > Preferences > Add-ons > Install from Disk… and pick "
             f"{os.path.basename(ext or path)} (or re-run with --blender PATH)")
        return []
    path = build_addon_zip(os.path.join(ROOT, "dist"))
    done = []
    for exe, version in blenders:
        vs = f"{version[0]}.{version[1]}" if version else "?"
        if version and version < (4, 2):
            warn(f"Blender {vs} at {exe} is older than 4.2, which MotionMill needs: skipped")
            continue
        say(f"Blender {vs} at {exe}: installing the add-on")
        target, kind = install_addon(exe, version, path, os_name, record)
        say(f"{kind} installed in {target}")
        done.append((exe, vs, target))
    return done


# ---- settings, record, uninstall ----------------------------------------------------------------------------

class Record:
    """<data dir>/install-record.json: what this installer created, so --uninstall removes exactly that."""

    def __init__(self, path):
        self.path = path
        try:
            with open(path) as f:
                self.data = json.load(f)
        except (OSError, ValueError):
            self.data = {}
        for key in ("venv", "addon", "files", "dirs"):
            self.data.setdefault(key, [])
        self.data.setdefault("settings", {})

    def add(self, kind, path):
        entry = os.path.abspath(path)
        if entry not in self.data[kind]:
            self.data[kind].append(entry)
        self.save()

    def add_file(self, path, downloaded):
        self._add_entry("files", path, downloaded)

    def add_dir(self, path, downloaded):
        self._add_entry("dirs", path, downloaded)

    def _add_entry(self, kind, path, downloaded):
        path = os.path.abspath(path)
        for e in self.data[kind]:
            if e["path"] == path:
                e["downloaded"] = e["downloaded"] or downloaded
                break
        else:
            self.data[kind].append({"path": path, "downloaded": downloaded})
        self.save()

    def settings(self, **values):
        from motionmill_common.folders import save_settings
        save_settings(**values)
        self.data["settings"].update(values)
        self.save()

    def save(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1)
        os.replace(tmp, self.path)


def record_path():
    from motionmill_common.folders import data_dir
    return os.path.join(data_dir(), "install-record.json")


def uninstall(yes, ask=input):
    from motionmill_common.folders import config_path, load_settings
    path = record_path()
    if not os.path.isfile(path):
        say(f"nothing to remove: no install record at {path}")
        return 0
    rec = Record(path)
    d = rec.data
    downloaded = [e["path"] for e in d["files"] if e["downloaded"] and os.path.lexists(e["path"])]
    keep_weights = False
    if downloaded and not yes:
        total = sum(_tree_size(p) for p in downloaded)
        answer = ask(f"[install] delete {len(downloaded)} downloaded model files ({_size(total)})? [y/N] ")
        keep_weights = answer.strip().lower() not in ("y", "yes")
    for p in d["addon"] + d["venv"]:
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
            say(f"removed {p}")
    for e in d["files"]:
        p = e["path"]
        if keep_weights and e["downloaded"]:
            continue
        if os.path.islink(p) or os.path.isfile(p):
            os.remove(p)
        elif os.path.isdir(p):
            shutil.rmtree(p)
        else:
            continue
        say(f"removed {p}")
    manifest_dirs = sorted((e["path"] for e in d["dirs"]), key=len, reverse=True)
    for p in manifest_dirs:
        try:
            os.rmdir(p)  # only when empty: a folder that still holds the user's own files stays
            say(f"removed {p}")
        except OSError:
            pass
    settings = load_settings()
    ours = {k: v for k, v in d["settings"].items() if settings.get(k) == v}  # unless the user changed them
    if keep_weights:
        ours.pop("model_dir", None)
    if ours:
        rest = {k: v for k, v in settings.items() if k not in ours}
        cpath = config_path()
        if rest:
            with open(cpath + ".tmp", "w") as f:
                json.dump(rest, f, indent=1)
            os.replace(cpath + ".tmp", cpath)
        else:
            os.remove(cpath)
        say(f"removed settings {', '.join(sorted(ours))} from {cpath}")
    if keep_weights:
        kept = {k: v for k, v in d["settings"].items() if k == "model_dir"}
        rec.data = {"venv": [], "addon": [], "dirs": d["dirs"], "settings": kept,
                    "files": [e for e in d["files"] if e["downloaded"]]}
        rec.save()
        say(f"kept the downloaded weights; {path} still lists them")
    else:
        os.remove(path)
    return 0


def _tree_size(p):
    if os.path.islink(p) or os.path.isfile(p):
        return os.path.getsize(p) if not os.path.islink(p) else 0
    return sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(p) for f in fs)


# ---- --check ------------------------------------------------------------------------------------------------

def addon_installed(version, os_name):
    """(folder, "extension" or "add-on") of the MotionMill add-on installed for this Blender version, or None."""
    if version is None:
        return None
    for kind, folder in (("extension", extension_dir(version, os_name)),
                         ("add-on", os.path.join(blender_user_dir(version, "scripts", os_name), "addons", ADDON_MODULE))):
        if os.path.isfile(os.path.join(folder, "__init__.py")):
            return folder, kind
    return None


def check(a, os_name):
    py = venv_python(a.venv)
    rows = [("Installer Python", f"{platform.python_version()}" + ("" if sys.version_info[:2] == (3, 11)
                                                                   else "  (MotionMill needs 3.11)"))]
    report = None
    if not os.path.exists(py):
        rows.append(("Environment", f"NOT INSTALLED: {a.venv} is missing; run python3.11 install.py"))
    else:
        cmd = [py, "-m", "backend", "doctor", "--json"] + (["--model-dir", a.model_dir] if a.model_dir else [])
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
        try:
            report = json.loads(out.stdout)
        except ValueError:
            tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
            rows.append(("Environment", f"BROKEN: backend doctor failed ({tail[0]}); re-run python3.11 install.py"))
    if report:
        libs = report["libraries"]
        dev = report["device"]
        rows.append(("Backend Python", f"{report['python']} in {a.venv}"))
        rows.append(("torch", (libs.get("torch") or "NOT INSTALLED") +
                     (f", CUDA {dev['cuda']}" if dev["kind"] == "cuda" else ", no CUDA (CPU only)")))
        rows.append(("bitsandbytes", libs.get("bitsandbytes") or "NOT INSTALLED (needed for NF4/int8 on the GPU)"))
        rows.append(("GPU / VRAM", f"{dev['name']}: {dev['vram_free_gb']} GB free of {dev['vram_total_gb']} GB"
                     if dev["kind"] == "cuda" else dev["note"]))
        m = report["model"]
        rows.append(("Model directory", f"{m['dir']}: " + ("complete" if m["complete"] else
                                                           "INCOMPLETE: " + "; ".join(m["missing"]))))
    blenders = find_blenders(a.blender, os_name)
    if not blenders:
        rows.append(("Blender", "none found (install Blender 4.2+, or pass --blender PATH)"))
    for exe, version in blenders:
        vs = f"{version[0]}.{version[1]}" if version else "version unknown"
        found = addon_installed(version, os_name)
        rows.append((f"Blender {vs}", f"{exe}; add-on " + (f"installed ({found[1]}) in {found[0]}" if found
                                                            else "NOT installed")))
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k.ljust(width)}  {v}" for k, v in rows))
    ok = bool(report) and report["model"]["complete"] and any(addon_installed(v, os_name) for _, v in blenders)
    return 0 if ok else 1


# ---- main ---------------------------------------------------------------------------------------------------

def model_dir_for(a, size):
    from motionmill_common.folders import data_dir
    return os.path.abspath(a.model_dir or os.path.join(data_dir(), "models", f"motionmillion-{(size or '7B').lower()}"))


def setup_model(a, size, record):
    """Adopt (--from) or download (--weights) the release, verify it, then write the model directory's manifest."""
    model_dir = model_dir_for(a, size)
    if a.from_dir:
        size = adopt(a.from_dir, model_dir, a.copy, record)
    else:
        missing = download_libs_missing()
        if missing:
            raise InstallError(f"the download step needs {', '.join(missing)} in {sys.prefix}: re-run "
                               f"`python3.11 install.py --weights {a.weights}` without --no-env to install them")
        download_weights(size, model_dir, url_overrides(a.url), a.hf_endpoint, record)
    cfg = write_manifest(model_dir, size)
    record.add_file(cfg, downloaded=False)
    record.settings(model_dir=model_dir)
    needs = NEEDS[size]
    say(f"model directory ready: {model_dir} ({size}; both checkpoints opened and checked; needs about "
        f"{needs['vram_total_gb']} GB of VRAM with the text encoder)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dev", action="store_true", help="also install pytest, hypothesis and bpy for the tests")
    ap.add_argument("--cpu", action="store_true", help="install CPU torch even where a GPU is found")
    ap.add_argument("--weights", choices=["7b", "3b", "none"], default="none",
                    help="download this release into your data folder (7b: ~27 GB, 3b: ~18 GB)")
    ap.add_argument("--from", dest="from_dir", metavar="DIR", help="adopt release files you already downloaded")
    ap.add_argument("--copy", action="store_true", help="with --from: copy the files instead of linking them")
    ap.add_argument("--model-dir", help="where the model goes (default: <data dir>/motionmill/models/motionmillion-7b, "
                    "or -3b with --weights 3b; MOTIONMILL_DATA replaces <data dir>/motionmill; here: "
                    f"{model_dir_for(argparse.Namespace(model_dir=None), '7B')})".replace("%", "%%"))
    ap.add_argument("--blender", action="append", metavar="PATH", help="a Blender executable (repeatable); "
                    "default: the usual install locations")
    ap.add_argument("--no-blender", action="store_true", help="skip the Blender add-on step")
    ap.add_argument("--no-env", action="store_true", help="skip the Python environment step (.venv and pip)")
    ap.add_argument("--venv", default=VENV, help=argparse.SUPPRESS)
    ap.add_argument("--url", action="append", metavar="NAME=URL", help="download NAME (tokenizer, t2m-7B, "
                    "t2m-3B, mean, std) from URL instead")
    ap.add_argument("--hf-endpoint", default=os.environ.get("HF_ENDPOINT", HF_ENDPOINT), help=argparse.SUPPRESS)
    # the weights step alone (--weights or --from), run by model_step_in_venv() with .venv's Python
    ap.add_argument("--download-step", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--dry-run", action="store_true", help="detect and say what would be installed; change nothing")
    ap.add_argument("--check", action="store_true", help="check the set-up and print one table")
    ap.add_argument("--uninstall", action="store_true", help="remove what this installer created")
    ap.add_argument("--yes", action="store_true", help="with --uninstall: delete downloaded weights without asking")
    a = ap.parse_args(argv)
    a.venv = os.path.abspath(a.venv)
    os_name = detect_os()
    try:
        if a.check:
            return check(a, os_name)
        if a.uninstall:
            return uninstall(a.yes)
        if a.download_step:
            setup_model(a, {"7b": "7B", "3b": "3B"}.get(a.weights), Record(record_path()))
            return 0
        check_python()
        say(f"{platform.system()} {platform.machine()}, Python {platform.python_version()}")
        record = Record(record_path()) if not a.dry_run else Record(os.devnull + ".unused")
        if a.dry_run:
            record.save = lambda: None
        py = venv_python(a.venv)
        if not a.no_env:
            gpu = None if a.cpu else detect_gpu()
            if gpu:
                name, cuda = gpu
                say(f"NVIDIA GPU: {name}, driver CUDA {'.'.join(map(str, cuda)) if cuda else 'unknown'}")
            elif not a.cpu:
                warn("no NVIDIA GPU found (nvidia-smi): installing CPU torch; generation with the 3B/7B models "
                     "will be slow")
            py = setup_env(a, gpu, os_name, record)
        if a.dry_run:
            return 0
        record.settings(backend_python=py, backend_root=ROOT)
        if not a.no_blender:
            setup_blender(a, os_name, py, record)
        size = {"7b": "7B", "3b": "3B"}.get(a.weights)
        if a.from_dir or size:
            missing = model_libs_missing() + ([] if a.from_dir else download_libs_missing())
            if missing:  # the usual case: this is the bare Python that made .venv
                rc = model_step_in_venv(a, model_dir_for(a, size))
                if rc:
                    return rc
            else:
                setup_model(a, size, record)
        else:
            say("no model yet: add one with `python3.11 install.py --weights 7b` (about 27 GB) or --weights 3b "
                "(about 18 GB), or --from DIR")
        say("done. Check the set-up with: python3.11 install.py --check")
        return 0
    except InstallError as err:
        print(f"[install] error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("[install] interrupted: re-run the same command to continue (downloads resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
