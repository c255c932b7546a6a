"""install.py: GPU detection at the nvidia-smi boundary, the resumable downloader on a loopback server, adopting
a downloaded release, installing the add-on into a Blender scripts folder (checked with real bpy), --check and
--uninstall. No real pip installs, no venv creation, nothing reaches the internet."""
import http.server
import json
import os
import pathlib
import subprocess
import sys
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import install  # noqa: E402
from models.manifest import load_config  # noqa: E402

PY = sys.executable
SYSTEM_PATH = "/usr/bin:/bin"


# ---- helpers ------------------------------------------------------------------------------------------------

@pytest.fixture
def env(tmp_path, monkeypatch):
    """Settings, data and Blender user folders in tmp; a PATH with only the fakes in tmp/bin and the system."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    e = {
        "MOTIONMILL_DATA": str(tmp_path / "data"),
        "MOTIONMILL_CONFIG": str(tmp_path / "config" / "config.json"),
        "BLENDER_USER_SCRIPTS": str(tmp_path / "bl_scripts"),
        "BLENDER_USER_CONFIG": str(tmp_path / "bl_config"),
        "BLENDER_USER_EXTENSIONS": str(tmp_path / "bl_ext"),
        "HOME": str(tmp_path / "home"),
        "PATH": f"{bindir}:{SYSTEM_PATH}",
    }
    for k, v in e.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("MOTIONMILL_MODEL_DIR", raising=False)
    e["bin"] = bindir
    return e


def run_install(env, *args, input=None):
    child = {k: v for k, v in os.environ.items()}
    child.update({k: v for k, v in env.items() if k != "bin"})
    return subprocess.run([PY, str(ROOT / "install.py"), *args], capture_output=True, text=True, env=child,
                          input=input, timeout=300, cwd=str(ROOT))


def fake_exe(path, body):
    path.write_text(body)
    path.chmod(0o755)
    return path


NVIDIA_SMI = """#!/bin/sh
if [ "$1" = "--query-gpu=name" ]; then echo "NVIDIA GeForce RTX 4090"; exit 0; fi
cat <<'EOF'
Tue Jun 10 14:02:11 2025
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 570.133.07             Driver Version: 570.133.07     CUDA Version: {cuda}     |
|-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |
|=========================================+========================+======================|
|   0  NVIDIA GeForce RTX 4090        Off |   00000000:01:00.0  On |                  Off |
|  0%   41C    P8             21W /  450W |     612MiB /  24564MiB |      2%      Default |
+-----------------------------------------+------------------------+----------------------+
EOF
"""


def one_error_line(stderr):
    errors = [line for line in stderr.splitlines() if line.startswith("[install] error:")]
    assert len(errors) == 1, stderr
    return errors[0]


# ---- GPU detection and the torch build -------------------------------------------------------------------------

@pytest.mark.parametrize("cuda, tag", [("12.8", "cu128"), ("13.0", "cu130"), ("12.6", "cu126"), ("12.9", "cu128")])
def test_gpu_picks_the_cuda_build_the_driver_supports(env, cuda, tag):
    fake_exe(env["bin"] / "nvidia-smi", NVIDIA_SMI.replace("{cuda}", cuda))
    out = run_install(env, "--dry-run", "--no-blender")
    assert out.returncode == 0, out.stderr
    assert f"NVIDIA GPU: NVIDIA GeForce RTX 4090, driver CUDA {cuda}" in out.stdout
    assert f"torch==2.13.0+{tag} from https://download.pytorch.org/whl/{tag}" in out.stdout
    assert "no NVIDIA GPU" not in out.stderr


def test_old_driver_is_one_clear_error(env):
    fake_exe(env["bin"] / "nvidia-smi", NVIDIA_SMI.replace("{cuda}", "11.8"))
    out = run_install(env, "--dry-run", "--no-blender")
    assert out.returncode == 1
    line = one_error_line(out.stderr)
    assert "CUDA 11.8" in line and "update the NVIDIA driver" in line and "--cpu" in line
    assert "would install" not in out.stdout


def test_old_driver_with_cpu_flag_installs_cpu_torch(env):
    fake_exe(env["bin"] / "nvidia-smi", NVIDIA_SMI.replace("{cuda}", "11.8"))
    out = run_install(env, "--dry-run", "--no-blender", "--cpu")
    assert out.returncode == 0, out.stderr
    assert "torch==2.13.0+cpu" in out.stdout


@pytest.mark.parametrize("smi", [None, "#!/bin/sh\necho \"NVIDIA-SMI has failed because it couldn't communicate "
                                       "with the NVIDIA driver.\"\nexit 9\n"])
def test_no_gpu_warns_and_continues_on_cpu(env, smi):
    if smi:
        fake_exe(env["bin"] / "nvidia-smi", smi)
    out = run_install(env, "--dry-run", "--no-blender")
    assert out.returncode == 0, out.stderr
    assert "warning: no NVIDIA GPU found" in out.stderr
    assert "torch==2.13.0+cpu from https://download.pytorch.org/whl/cpu" in out.stdout


def test_torch_build_per_platform():
    gpu = ("RTX", (12, 8))
    assert install.torch_build(gpu, "windows") == ("cu128", "https://download.pytorch.org/whl/cu128")
    assert install.torch_build(None, "windows") == ("", None)  # PyPI's Windows wheel is the CPU one
    assert install.torch_build(gpu, "macos") == ("", None)
    with pytest.raises(install.InstallError, match="update the NVIDIA driver"):
        install.torch_build(("RTX", (12, 4)), "windows")


def test_python_version_check():
    install.check_python((3, 11, 9))
    with pytest.raises(install.InstallError, match=r"Python 3\.12\.1 found; MotionMill needs Python 3\.11"):
        install.check_python((3, 12, 1))


def test_pip_is_skipped_only_when_the_venv_has_the_pins():
    """Asks a real venv (the one running these tests) through its own Python."""
    import importlib.metadata as md
    have_np = md.version("numpy")
    torch_tag = md.version("torch").partition("+")[2]
    assert install.venv_missing(PY, [f"numpy=={have_np}", "pytest>=1.0"], torch_tag) == \
        ([] if md.version("torch").split("+")[0] == install.TORCH_VERSION else install.venv_missing(PY, [], torch_tag))
    missing = install.venv_missing(PY, ["numpy==0.0.1", "not-a-real-package-xyz==1.0"], torch_tag)
    assert f"numpy {have_np} (want ==0.0.1)" in missing and "not-a-real-package-xyz missing" in missing
    wrong_build = install.venv_missing(PY, [], "cu128")
    assert any(m.startswith("torch ") and "+cu128" in m for m in wrong_build)


# ---- the downloader on a loopback server ------------------------------------------------------------------------

class Server:
    """Serves `files` with Range support; `cut[path] = n` sends only n bytes of the first GET, then hangs up."""

    def __init__(self):
        self.files, self.cut, self.requests, self.ignore_range, self.content_type = {}, {}, [], set(), {}
        self.tokens = {}  # path -> the bearer token it needs
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                path = self.path
                server.requests.append((path, self.headers.get("Range")))
                body = server.files.get(path)
                if path in server.tokens and self.headers.get("Authorization") != f"Bearer {server.tokens[path]}":
                    self.send_error(401)
                    return
                if body is None:
                    self.send_error(404)
                    return
                if callable(body):
                    body = body()
                start, status = 0, 200
                rng = self.headers.get("Range")
                if rng and path not in server.ignore_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    status = 206
                self.send_response(status)
                self.send_header("Content-Type", server.content_type.get(path, "application/octet-stream"))
                self.send_header("Content-Length", str(len(body) - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                chunk = body[start:]
                if path in server.cut:
                    n = server.cut.pop(path)
                    self.wfile.write(chunk[:n])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(chunk)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def blob(n, seed=1):
    return bytes((i * 7 + seed * 13 + (i >> 8)) % 251 for i in range(n))


def test_download_resumes_after_a_cut_connection(server, tmp_path):
    data = blob(300_000)
    server.files["/w.bin"] = data
    server.cut["/w.bin"] = 123_457
    dest = tmp_path / "m" / "w.bin"
    install.download(server.url + "/w.bin", str(dest), backoff=0, chunk=4096)
    assert dest.read_bytes() == data
    assert not (tmp_path / "m" / "w.bin.part").exists()
    assert server.requests == [("/w.bin", None), ("/w.bin", "bytes=123457-")]


def test_cut_download_keeps_the_part_and_the_next_run_resumes(server, tmp_path):
    data = blob(200_000, seed=2)
    server.files["/w.bin"] = data
    server.cut["/w.bin"] = 50_000
    dest = tmp_path / "w.bin"
    with pytest.raises(install.InstallError, match="re-run to resume"):
        install.download(server.url + "/w.bin", str(dest), retries=0, backoff=0)
    part = tmp_path / "w.bin.part"
    assert part.read_bytes() == data[:50_000] and not dest.exists()
    install.download(server.url + "/w.bin", str(dest), backoff=0)  # "the next run"
    assert dest.read_bytes() == data
    assert server.requests[-1] == ("/w.bin", "bytes=50000-")


def test_size_mismatch_is_a_clear_error_and_keeps_the_part(server, tmp_path):
    data = blob(10_000, seed=3)
    server.files["/w.bin"] = data
    dest = tmp_path / "w.bin"
    part = tmp_path / "w.bin.part"
    part.write_bytes(data[:4000])
    with pytest.raises(install.InstallError) as err:
        install.download(server.url + "/w.bin", str(dest), expected_size=12_345, backoff=0)
    msg = str(err.value)
    assert "10000 bytes but 12345 were expected" in msg and "kept" in msg and "\n" not in msg
    assert part.read_bytes() == data[:4000] and not dest.exists()
    # with the right size it resumes from the kept .part
    install.download(server.url + "/w.bin", str(dest), expected_size=10_000, backoff=0)
    assert dest.read_bytes() == data and server.requests[-1] == ("/w.bin", "bytes=4000-")


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    data = blob(5000, seed=4)
    server.files["/w.bin"] = data
    server.ignore_range.add("/w.bin")
    (tmp_path / "w.bin.part").write_bytes(b"\0" * 1000)  # stale junk that must not stay in front
    install.download(server.url + "/w.bin", str(tmp_path / "w.bin"), backoff=0)
    assert (tmp_path / "w.bin").read_bytes() == data


def test_web_page_instead_of_file_and_http_errors(server, tmp_path):
    server.files["/drive"] = b"<html>Google Drive - quota exceeded</html>"
    server.content_type["/drive"] = "text/html; charset=utf-8"
    with pytest.raises(install.InstallError, match="sent a web page instead of the file"):
        install.download(server.url + "/drive", str(tmp_path / "x.pth"), backoff=0)
    with pytest.raises(install.InstallError, match="HTTP 404"):
        install.download(server.url + "/missing", str(tmp_path / "y.pth"), backoff=0)


def test_progress_is_shown(server, tmp_path, capsys):
    server.files["/w.bin"] = blob(100_000)
    install.download(server.url + "/w.bin", str(tmp_path / "w.bin"), chunk=5000, backoff=0)
    err = capsys.readouterr().err
    assert "w.bin: 0% of 97.7 KB" in err and "w.bin: 100% of 97.7 KB" in err and "w.bin: 50%" in err


def serve_release(server, size="3B"):
    """The release on the loopback server: Drive-style checkpoints, mean/std, an HF-style API."""
    files = {
        "/gd/tok": blob(20_000, 5), f"/gd/t2m{size}": blob(70_000, 6), "/gh/mean.npy": blob(2176, 7),
        "/gh/std.npy": blob(2176, 8),
    }
    hf = {"config.json": b'{"d_model": 2048}', "model-00001-of-00002.safetensors": blob(30_000, 9),
          "model-00002-of-00002.safetensors": blob(10_000, 10), "model.safetensors.index.json": b"{}",
          "spiece.model": blob(700, 11), "tokenizer.json": b"{}", "tokenizer_config.json": b"{}",
          "special_tokens_map.json": b"{}", "pytorch_model.bin": blob(40_000, 12), "flax_model.msgpack": blob(999, 1),
          "README.md": b"# flan"}
    for name, body in hf.items():
        files[f"/google/flan-t5-xl/resolve/main/{name}"] = body
    server.files.update(files)
    server.files["/api/models/google/flan-t5-xl/revision/main?blobs=true"] = json.dumps(
        {"siblings": [{"rfilename": n, "size": len(b)} for n, b in hf.items()]}).encode()
    args = ["--url", f"tokenizer={server.url}/gd/tok", "--url", f"t2m-{size}={server.url}/gd/t2m{size}",
            "--url", f"mean={server.url}/gh/mean.npy", "--url", f"std={server.url}/gh/std.npy",
            "--hf-endpoint", server.url]
    return files, hf, args


def test_weights_download_end_to_end_then_uninstall(env, server, monkeypatch, capsys):
    files, hf, args = serve_release(server, "3B")
    server.cut["/google/flan-t5-xl/resolve/main/model-00001-of-00002.safetensors"] = 10_000
    free = 10 ** 12
    monkeypatch.setattr(install.shutil, "disk_usage", lambda p: type("U", (), {"free": free})())
    assert install.main(["--weights", "3b", "--no-env", "--no-blender", *args]) == 0
    model_dir = pathlib.Path(env["MOTIONMILL_DATA"]) / "models" / "motionmillion-3b"
    assert (model_dir / "fsq_net_6000000.pth").read_bytes() == files["/gd/tok"]
    assert (model_dir / "motionmillion_3B_all.pth").read_bytes() == files["/gd/t2m3B"]
    assert (model_dir / "mean.npy").read_bytes() == files["/gh/mean.npy"]
    te = model_dir / "flan-t5-xl"
    assert sorted(os.listdir(te)) == sorted(n for n in hf if n not in ("pytorch_model.bin", "flax_model.msgpack",
                                                                         "README.md"))
    assert (te / "model-00001-of-00002.safetensors").read_bytes() == hf["model-00001-of-00002.safetensors"]
    cfg = load_config(model_dir)
    assert (cfg.t2m.n_layer, cfg.t2m.n_embd, cfg.t2m.file) == (24, 3200, "motionmillion_3B_all.pth")
    assert cfg.missing_files() == []
    settings = json.loads(pathlib.Path(env["MOTIONMILL_CONFIG"]).read_text())
    assert settings["model_dir"] == str(model_dir)
    out = capsys.readouterr()
    assert "about 18 GB of disk" in out.out and "2.5 GB for the decoder" in out.out
    assert "connection cut" in out.err

    # a second run downloads nothing
    n = len(server.requests)
    assert install.main(["--weights", "3b", "--no-env", "--no-blender", *args]) == 0
    assert [p for p, _ in server.requests[n:]] == ["/api/models/google/flan-t5-xl/revision/main?blobs=true"]

    # uninstall: answering no keeps the weights, --yes removes them
    (model_dir / "my_notes.txt").write_text("mine")
    install.uninstall(False, ask=lambda q: "n")
    assert json.loads(pathlib.Path(env["MOTIONMILL_CONFIG"]).read_text()) == {"model_dir": str(model_dir)}
    assert (model_dir / "motionmillion_3B_all.pth").exists() and (te / "config.json").exists()
    assert not (model_dir / "config.json").exists()  # the manifest was written, not downloaded
    install.uninstall(True)
    assert sorted(os.listdir(model_dir)) == ["my_notes.txt"]
    assert not os.path.exists(install.record_path())
    assert not pathlib.Path(env["MOTIONMILL_CONFIG"]).exists()  # it held only our keys


def test_mean_std_come_from_the_gated_hf_dataset_with_a_token(env, server, monkeypatch, capsys):
    """Without --url mean/std they come from <hf endpoint>/datasets/InternRobotics/MotionMillion, with HF_TOKEN."""
    files, hf, args = serve_release(server, "3B")
    args = args[:4] + args[8:]  # tokenizer and t2m-3B URLs, the HF endpoint; no mean/std URLs
    for key, name in install.MEAN_STD_FILES.items():
        path = f"/datasets/InternRobotics/MotionMillion/resolve/main/{name}"
        server.files[path] = files[f"/gh/{key}.npy"]
        server.tokens[path] = "hf_secret"
    monkeypatch.setattr(install.shutil, "disk_usage", lambda p: type("U", (), {"free": 10 ** 12})())
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(pathlib.Path(env["HOME"]) / "hf"))
    assert install.main(["--weights", "3b", "--no-env", "--no-blender", *args]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "mean.npy" in line and "HTTP 401" in line and "gated Hugging Face repository" in line and "HF_TOKEN" in line
    assert not any(p.startswith("/gd/") for p, _ in server.requests)  # failed before the big downloads
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    assert install.main(["--weights", "3b", "--no-env", "--no-blender", *args]) == 0
    model_dir = pathlib.Path(env["MOTIONMILL_DATA"]) / "models" / "motionmillion-3b"
    assert (model_dir / "mean.npy").read_bytes() == files["/gh/mean.npy"]
    assert (model_dir / "std.npy").read_bytes() == files["/gh/std.npy"]


def test_not_enough_disk_space(env, server, monkeypatch, capsys):
    _, _, args = serve_release(server, "7B")
    monkeypatch.setattr(install.shutil, "disk_usage", lambda p: type("U", (), {"free": 3 * 10 ** 9})())
    assert install.main(["--weights", "7b", "--no-env", "--no-blender", *args]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "not enough disk space" in line and "2.8 GB free" in line and "25.1 GB" in line
    assert not any(p.startswith("/gd/") for p, _ in server.requests)


def test_unknown_tokenizer_link_is_a_clear_error(env, server, monkeypatch, capsys):
    files, hf, args = serve_release(server, "7B")
    args = args[2:]  # no tokenizer URL: the real Drive id is not known (see GDRIVE_IDS)
    monkeypatch.delenv("MOTIONMILL_URL_TOKENIZER", raising=False)
    monkeypatch.setitem(install.GDRIVE_IDS, "tokenizer", None)
    monkeypatch.setattr(install.shutil, "disk_usage", lambda p: type("U", (), {"free": 10 ** 12})())
    assert install.main(["--weights", "7b", "--no-env", "--no-blender", *args]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "no download link is known for fsq_net_6000000.pth" in line and "--url tokenizer=URL" in line


# ---- adopting a downloaded release -------------------------------------------------------------------------------

def make_reference_layout(root):
    files = {
        "output/t2m/7B_all/motionmillion_7B_all.pth": b"t2m7",
        "output/vq/fsq/fsq_net_6000000.pth": b"fsq",
        "checkpoints/models--google--flan-t5-xl/snapshots/0a1b2c3d/config.json": b"{}",
        "checkpoints/models--google--flan-t5-xl/snapshots/0a1b2c3d/model-00001-of-00002.safetensors": b"st1",
        "checkpoints/models--google--flan-t5-xl/snapshots/0a1b2c3d/model-00002-of-00002.safetensors": b"st2",
        "checkpoints/models--google--flan-t5-xl/refs/main": b"0a1b2c3d",
        "dataset/MotionMillion/mean_std/vector_272/mean.npy": b"mean272",
        "dataset/MotionMillion/mean_std/vector_272/std.npy": b"std272",
        "dataset/HumanML3D/mean.npy": b"mean263",  # a decoy: not the 272-dim statistics
    }
    for rel, body in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(body)
    return files


def test_adopt_reference_layout_by_linking(env, tmp_path):
    src = tmp_path / "MotionMillion-Codes"
    make_reference_layout(src)
    out = run_install(env, "--from", str(src), "--no-env", "--no-blender")
    assert out.returncode == 0, out.stderr
    model_dir = pathlib.Path(env["MOTIONMILL_DATA"]) / "models" / "motionmillion-7b"
    assert os.path.islink(model_dir / "motionmillion_7B_all.pth")
    assert (model_dir / "mean.npy").read_bytes() == b"mean272"
    assert (model_dir / "flan-t5-xl" / "model-00002-of-00002.safetensors").read_bytes() == b"st2"
    cfg = load_config(model_dir)
    assert cfg.t2m.n_layer == 36 and cfg.missing_files() == []
    assert json.loads((model_dir / "config.json").read_text())["format"] == "motionmillion-modeldir/1"
    assert json.loads(pathlib.Path(env["MOTIONMILL_CONFIG"]).read_text())["model_dir"] == str(model_dir)


def test_adopt_flat_folder_by_copying(env, tmp_path):
    src = tmp_path / "downloads"
    (src / "flan-t5-xl").mkdir(parents=True)
    for name, body in {"motionmillion_3B_all.pth": b"t2m3", "fsq_net_6000000.pth": b"fsq", "mean.npy": b"m",
                       "std.npy": b"s", "flan-t5-xl/config.json": b"{}", "flan-t5-xl/model.safetensors": b"w"}.items():
        (src / name).write_bytes(body)
    model_dir = tmp_path / "mymodel"
    out = run_install(env, "--from", str(src), "--copy", "--model-dir", str(model_dir), "--no-env", "--no-blender")
    assert out.returncode == 0, out.stderr
    assert not os.path.islink(model_dir / "motionmillion_3B_all.pth")
    assert (model_dir / "motionmillion_3B_all.pth").read_bytes() == b"t2m3"
    cfg = load_config(model_dir)
    assert cfg.t2m.n_embd == 3200 and cfg.missing_files() == []


def test_adopt_incomplete_folder_names_what_is_missing(env, tmp_path):
    src = tmp_path / "downloads"
    src.mkdir()
    (src / "motionmillion_7B_all.pth").write_bytes(b"x")
    (src / "mean.npy").write_bytes(b"x")
    out = run_install(env, "--from", str(src), "--no-env", "--no-blender")
    assert out.returncode == 1
    line = one_error_line(out.stderr)
    assert "fsq_net_6000000.pth" in line and "flan-t5-xl" in line and "std.npy" in line and "mean.npy" not in line


# ---- Blender ---------------------------------------------------------------------------------------------------

FAKE_BLENDER = f"""#!{PY}
# Blender's command line, played by the bpy module: --version; --background --python-expr EXPR; and
# --command extension ARGS, which runs Blender's own handler for that command (bl_pkg's extension CLI, the code real
# Blender runs: it installs with bpy.ops.extensions.package_install_files and saves the preferences).
import sys
if "--version" in sys.argv:
    print("Blender 5.0.1\\n\\tbuild date: 2025-12-08")
    sys.exit(0)
if "--python-expr" in sys.argv:
    import bpy
    exec(sys.argv[sys.argv.index("--python-expr") + 1])
    sys.exit(0)
if sys.argv[1:3] == ["--command", "extension"]:
    import bpy
    from bl_pkg import bl_extension_cli
    sys.exit(bl_extension_cli.cli_extension_handler(sys.argv[3:]))
sys.exit(2)
"""

CHECK_ADDON = """
import bpy, addon_utils, json, sys
mod = addon_utils.enable("motionmill", default_set=True)
import motionmill.retarget.rotations
print(json.dumps({"file": mod.__file__, "enabled": "motionmill" in bpy.context.preferences.addons,
                  "name": mod.bl_info["name"]}))
addon_utils.disable("motionmill")
"""

# bpy.ops.motionmill.generate exists as a name whatever is registered: ask for the operator's RNA type instead.
CHECK_EXTENSION = """
import bpy, addon_utils, importlib, json
name = "bl_ext.user_default.motionmill"
def registered():
    try:
        bpy.ops.motionmill.generate.get_rna_type()
        return True
    except KeyError:
        return False
before = registered()
mod = addon_utils.enable(name, default_set=True)
paths = importlib.import_module(name + ".paths")
info = {"before": before, "file": mod.__file__, "registered": registered(),
        "enabled": name in bpy.context.preferences.addons,
        "retarget": importlib.import_module(name + "._rt")._name,
        "data_dir": paths.data_dir(create=False), "prefs": importlib.import_module(name + ".props").get_prefs() is not None}
addon_utils.disable(name, default_set=True)
info["after_disable"] = registered()
print(json.dumps(info))
"""


def run_check(env, tmp_path, script):
    child = {**os.environ, **{k: v for k, v in env.items() if k != "bin"}}
    check = subprocess.run([PY, "-c", script], capture_output=True, text=True, env=child, timeout=300,
                           cwd=str(tmp_path))
    assert check.returncode == 0, check.stderr
    return json.loads(check.stdout.strip().splitlines()[-1])


def test_addon_zip_bundles_retarget(tmp_path):
    import zipfile
    path = install.build_addon_zip(str(tmp_path))
    names = zipfile.ZipFile(path).namelist()
    assert "motionmill/__init__.py" in names and "motionmill/retarget/rotations.py" in names
    assert not any("__pycache__" in n for n in names)


@pytest.mark.bpy
def test_extension_installs_and_registers_in_blender(env, tmp_path):
    (tmp_path / "blender-5.0.1-linux-x64").mkdir()
    blender = fake_exe(tmp_path / "blender-5.0.1-linux-x64" / "blender", FAKE_BLENDER)
    out = run_install(env, "--blender", str(blender), "--no-env")
    assert out.returncode == 0, out.stderr
    assert "warning" not in out.stderr, out.stderr
    target = pathlib.Path(env["BLENDER_USER_EXTENSIONS"]) / "user_default" / "motionmill"
    assert f"extension installed in {target}" in out.stdout
    assert (target / "blender_manifest.toml").is_file() and (target / "retarget" / "rotations.py").is_file()
    assert not (pathlib.Path(env["BLENDER_USER_SCRIPTS"]) / "addons" / "motionmill").exists()
    info = run_check(env, tmp_path, CHECK_EXTENSION)
    assert info["before"] is False and info["registered"] is True and info["after_disable"] is False
    assert info["file"] == str(target / "__init__.py") and info["enabled"] and info["prefs"]
    assert info["retarget"] == "bl_ext.user_default.motionmill.retarget"  # the bundled copy, not the checkout's
    # user data goes where Blender keeps an extension's own files, never into the extension folder
    assert info["data_dir"] == str(pathlib.Path(env["BLENDER_USER_EXTENSIONS"]) / ".user" / "user_default" / "motionmill")
    settings = json.loads(pathlib.Path(env["MOTIONMILL_CONFIG"]).read_text())
    assert settings["backend_python"] == install.venv_python(install.VENV)
    assert "model_dir" not in settings

    # re-running replaces it in place
    out = run_install(env, "--blender", str(blender), "--no-env")
    assert out.returncode == 0 and f"extension installed in {target}" in out.stdout, out.stderr
    record = json.loads(pathlib.Path(install.record_path()).read_text())
    assert record["addon"] == [str(target)]


@pytest.mark.bpy
def test_legacy_addon_when_the_extension_command_fails(env, tmp_path):
    """A Blender whose `--command extension` fails gets the legacy add-on in scripts/addons."""
    body = FAKE_BLENDER.replace('if sys.argv[1:3] == ["--command", "extension"]:',
                                'if sys.argv[1:3] == ["--command", "extension"]:\n'
                                '    print("Unknown command: extension", file=sys.stderr); sys.exit(1)\n'
                                'if False:')
    blender = fake_exe(tmp_path / "blender", body)
    out = run_install(env, "--blender", str(blender), "--no-env")
    assert out.returncode == 0, out.stderr
    assert "could not install the extension (Unknown command: extension)" in out.stderr
    target = pathlib.Path(env["BLENDER_USER_SCRIPTS"]) / "addons" / "motionmill"
    assert f"add-on installed in {target}" in out.stdout
    assert not (pathlib.Path(env["BLENDER_USER_EXTENSIONS"]) / "user_default" / "motionmill").exists()
    info = run_check(env, tmp_path, CHECK_ADDON)
    assert info == {"file": str(target / "__init__.py"), "enabled": True, "name": "MotionMill"}


@pytest.mark.bpy
def test_extension_replaces_the_legacy_copy_this_installer_made(env, tmp_path):
    (tmp_path / "old").mkdir()
    failing = fake_exe(tmp_path / "old" / "blender",
                       FAKE_BLENDER.replace('sys.argv[1:3] == ["--command", "extension"]', 'False'))
    assert run_install(env, "--blender", str(failing), "--no-env").returncode == 0
    legacy = pathlib.Path(env["BLENDER_USER_SCRIPTS"]) / "addons" / "motionmill"
    assert legacy.is_dir()
    blender = fake_exe(tmp_path / "blender", FAKE_BLENDER)
    out = run_install(env, "--blender", str(blender), "--no-env")
    assert out.returncode == 0, out.stderr
    assert "removed the legacy add-on copy" in out.stdout and not legacy.exists()
    target = pathlib.Path(env["BLENDER_USER_EXTENSIONS"]) / "user_default" / "motionmill"
    assert json.loads(pathlib.Path(install.record_path()).read_text())["addon"] == [str(target)]


def test_no_blender_builds_the_zip_and_says_how(env):
    out = run_install(env, "--no-env")
    assert out.returncode == 0, out.stderr
    assert "no Blender found: built" in out.stderr and "Install from Disk" in out.stderr
    assert list((ROOT / "dist").glob("motionmill-*-addon.zip"))


def test_old_blender_is_skipped(env, tmp_path):
    blender = fake_exe(tmp_path / "blender", FAKE_BLENDER.replace("Blender 5.0.1", "Blender 3.6.5"))
    out = run_install(env, "--blender", str(blender), "--no-env")
    assert out.returncode == 0
    assert "Blender 3.6 at" in out.stderr and "older than 4.2" in out.stderr
    assert not (pathlib.Path(env["BLENDER_USER_SCRIPTS"]) / "addons" / "motionmill").exists()


@pytest.mark.bpy
def test_uninstall_removes_exactly_what_was_recorded(env, tmp_path):
    blender = fake_exe(tmp_path / "blender", FAKE_BLENDER)
    src = tmp_path / "MotionMill-Codes"
    files = make_reference_layout(src)
    config = pathlib.Path(env["MOTIONMILL_CONFIG"])
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"theme": "dark"}))
    other_addon = pathlib.Path(env["BLENDER_USER_SCRIPTS"]) / "addons" / "other_addon" / "__init__.py"
    other_addon.parent.mkdir(parents=True)
    other_addon.write_text("bl_info = {}")
    other_ext = pathlib.Path(env["BLENDER_USER_EXTENSIONS"]) / "user_default" / "other_ext" / "blender_manifest.toml"
    other_ext.parent.mkdir(parents=True)
    other_ext.write_text('id = "other_ext"')
    out = run_install(env, "--blender", str(blender), "--from", str(src), "--no-env")
    assert out.returncode == 0, out.stderr
    model_dir = pathlib.Path(env["MOTIONMILL_DATA"]) / "models" / "motionmillion-7b"
    (model_dir / "my_notes.txt").write_text("keep me")
    record = json.loads(pathlib.Path(install.record_path()).read_text())
    ext = pathlib.Path(env["BLENDER_USER_EXTENSIONS"]) / "user_default" / "motionmill"
    assert record["addon"] == [str(ext)] and (ext / "__init__.py").is_file()
    assert record["venv"] == []  # --no-env: this run created no .venv, so uninstall must not touch one

    out = run_install(env, "--uninstall")
    assert out.returncode == 0, out.stderr
    assert not ext.exists()
    assert other_addon.exists() and other_ext.exists()
    assert set(os.listdir(ext.parent)) - {".blender_ext"} == {"other_ext"}  # (Blender's own repository cache)
    assert sorted(os.listdir(model_dir)) == ["my_notes.txt"]
    for rel, body in files.items():  # the user's own download is untouched (links were removed, not targets)
        assert (src / rel).read_bytes() == body
    assert json.loads(config.read_text()) == {"theme": "dark"}
    assert not os.path.exists(install.record_path())
    assert (ROOT / ".venv").exists() == os.path.exists(ROOT / ".venv")  # (never recorded, never removed)
    again = run_install(env, "--uninstall")
    assert again.returncode == 0 and "nothing to remove" in again.stdout


# ---- --check -----------------------------------------------------------------------------------------------------

def test_check_reports_honestly(env, tmp_path):
    venv_dir = tmp_path / "venv"
    (venv_dir / "bin").mkdir(parents=True)
    fake_exe(venv_dir / "bin" / "python", f"#!/bin/sh\nexec {PY} \"$@\"\n")  # the test venv, as .venv
    blender = fake_exe(tmp_path / "blender", FAKE_BLENDER)
    model_dir = tmp_path / "empty-model"
    model_dir.mkdir()
    out = run_install(env, "--check", "--venv", str(venv_dir), "--blender", str(blender), "--model-dir", str(model_dir))
    assert out.returncode == 1, out.stdout + out.stderr
    table = dict(line.split("  ", 1) for line in out.stdout.splitlines())
    table = {k.strip(): v.strip() for k, v in table.items()}
    import importlib.metadata as md
    import torch
    assert table["torch"].startswith(md.version("torch"))
    cuda = torch.cuda.is_available()
    assert ("no CUDA" in table["torch"]) == (not cuda)
    assert table["bitsandbytes"] == md.version("bitsandbytes")
    assert table["Backend Python"].startswith(".".join(map(str, sys.version_info[:3])))
    assert table["Model directory"].startswith(f"{model_dir}: INCOMPLETE")
    assert table["Blender 5.0"] == f"{blender}; add-on NOT installed"

    assert run_install(env, "--blender", str(blender), "--no-env").returncode == 0
    out = run_install(env, "--check", "--venv", str(venv_dir), "--blender", str(blender), "--model-dir", str(model_dir))
    table = {k.strip(): v.strip() for k, v in (line.split("  ", 1) for line in out.stdout.splitlines())}
    ext = pathlib.Path(env["BLENDER_USER_EXTENSIONS"]) / "user_default" / "motionmill"
    assert table["Blender 5.0"] == f"{blender}; add-on installed (extension) in {ext}"


def test_check_without_venv_or_blender(env, tmp_path):
    out = run_install(env, "--check", "--venv", str(tmp_path / "nothing"))
    assert out.returncode == 1
    assert "NOT INSTALLED" in out.stdout and "Blender" in out.stdout and "none found" in out.stdout
