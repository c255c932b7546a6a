"""install.py: GPU detection at the nvidia-smi boundary, the downloads (gdown, huggingface_hub) against a loopback
server, adopting a downloaded release, installing the add-on into a Blender scripts folder (checked with real bpy),
--check and --uninstall. No real pip installs, no venv creation, nothing reaches the internet."""
import hashlib
import http.server
import json
import os
import pathlib
import random
import shutil
import socket
import subprocess
import sys
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import install  # noqa: E402
from models.manifest import load_config  # noqa: E402
from standins import TINY, TINY_PRESET, reference_layout, save_t2m_training, save_tokenizer_training, zip_archive  # noqa: E402

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



def test_the_venv_imports_the_project_from_any_folder_and_uninstall_unlinks_it(env, tmp_path):
    """A pipeline script in its own folder runs `.venv/bin/python -m backend`: a real (pip-less) venv gets the
    link, a re-run does not add it twice, and --uninstall removes the link but not a venv it did not create."""
    import venv
    venv_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(venv_dir)
    py = str(venv_dir / "bin" / "python")
    elsewhere = tmp_path / "pipeline"
    elsewhere.mkdir()
    where = "import importlib.util as u; print(*(u.find_spec(m) and u.find_spec(m).origin for m in ('backend', 'retarget')))"
    before = subprocess.run([py, "-c", where], cwd=elsewhere, capture_output=True, text=True)
    assert before.stdout.split() == ["None", "None"], before.stderr

    record = install.Record(install.record_path())
    pth = install.link_project(py, record)
    assert install.link_project(py, record) == pth
    after = subprocess.run([py, "-c", where], cwd=elsewhere, capture_output=True, text=True)
    assert after.stdout.split() == [str(ROOT / "backend" / "__init__.py"), str(ROOT / "retarget" / "__init__.py")]
    assert [e["path"] for e in json.loads(pathlib.Path(install.record_path()).read_text())["files"]] == [pth]

    out = run_install(env, "--uninstall")
    assert out.returncode == 0, out.stderr
    assert not os.path.exists(pth) and os.path.isfile(py)


# ---- the downloads, on a loopback server ------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def no_internet(monkeypatch):
    """Nothing here may leave the machine: a connection to anything but loopback fails the test, and the Hugging
    Face endpoint defaults to a closed loopback port (a test that forgets --hf-endpoint fails, it does not download)."""
    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"a test tried to reach {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Server:
    """Serves `files` over HTTP on 127.0.0.1 with what the two download libraries rely on: Content-Length, an ETag,
    Range and If-Range. Paths `/<repo>/resolve/<rev>/<file>` (and `/datasets/...`) answer HEAD as the Hugging Face
    Hub's resolve endpoint does (X-Repo-Commit, ETag, Content-Length). Faults:
      cut[path] = n       the next GET sends only n bytes of its body, then hangs up (once);
      short[path] = n     every GET announces the whole body but sends at most n bytes of it;
      head_size[path] = n HEAD announces n bytes whatever the body is;
      tokens[path] = t    needs `Authorization: Bearer t`, else 401 with X-Error-Code: GatedRepo (as the Hub does)."""

    def __init__(self):
        self.files, self.cut, self.short, self.head_size, self.tokens, self.content_type = {}, {}, {}, {}, {}, {}
        self.requests = []  # (method, path, Range header)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _headers_for(self, path, body):
                tag = '"' + hashlib.sha1(body).hexdigest() + '"'
                self.send_header("ETag", tag)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", server.content_type.get(path, "application/octet-stream"))
                if "/resolve/" in path:
                    self.send_header("X-Repo-Commit", COMMIT)
                return tag

            def _lookup(self, method):
                path = self.path
                server.requests.append((method, path, self.headers.get("Range")))
                if path in server.tokens and self.headers.get("Authorization") != f"Bearer {server.tokens[path]}":
                    self.send_response(401)
                    self.send_header("X-Error-Code", "GatedRepo")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None, None
                body = server.files.get(path)
                if body is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None, None
                return path, body

            def do_HEAD(self):
                path, body = self._lookup("HEAD")
                if path is None:
                    return
                self.send_response(200)
                self._headers_for(path, body)
                self.send_header("Content-Length", str(server.head_size.get(path, len(body))))
                self.end_headers()

            def do_GET(self):
                path, body = self._lookup("GET")
                if path is None:
                    return
                start, status = 0, 200
                rng, if_range = self.headers.get("Range"), self.headers.get("If-Range")
                etag = '"' + hashlib.sha1(body).hexdigest() + '"'
                if rng and (if_range is None or if_range == etag):
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                self.send_response(status)
                self._headers_for(path, body)
                self.send_header("Content-Length", str(len(body) - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                chunk = body[start:]
                n = server.cut.pop(path, None)
                if n is None:
                    n = server.short.get(path)
                try:
                    self.wfile.write(chunk if n is None else chunk[:n])
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                if n is not None:
                    self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def gets(self, path=None):
        return [(p, r) for m, p, r in self.requests if m == "GET" and (path is None or p == path)]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def blob(n, seed=1):
    return random.Random(seed).randbytes(n)


def parts(folder):
    return sorted(p.name for p in pathlib.Path(folder).iterdir() if p.name.endswith(".part"))


# -- gdown: Google Drive checkpoints and plain URLs --

def kept(n):
    """The bytes of a cut answer gdown keeps: whole reads of its CHUNK_SIZE (urllib3 drops a read cut short)."""
    import importlib
    chunk = importlib.import_module("gdown.download").CHUNK_SIZE  # (the module: gdown.download is also a function)
    return n // chunk * chunk


def test_gdown_resumes_a_cut_connection_and_shows_progress(server, tmp_path, capsys):
    data = blob(1_500_000)
    server.files["/w.bin"] = data
    server.cut["/w.bin"] = 1_100_000
    dest = tmp_path / "m" / "w.bin"
    install.fetch_url(server.url + "/w.bin", str(dest), "w.bin", retries=2)
    assert dest.read_bytes() == data
    assert parts(tmp_path / "m") == []
    assert kept(1_100_000) > 0
    assert server.gets() == [("/w.bin", None), ("/w.bin", f"bytes={kept(1_100_000)}-")]  # the rest, not all again
    err = capsys.readouterr().err
    assert "100%" in err and "1.50M/1.50M" in err  # gdown's progress bar, on stderr


def test_gdown_cut_download_is_kept_and_the_next_run_resumes(server, tmp_path):
    data = blob(1_500_000, seed=2)
    server.files["/w.bin"] = data
    server.cut["/w.bin"] = 700_000
    dest = tmp_path / "w.bin"
    with pytest.raises(install.InstallError) as err:
        install.fetch_url(server.url + "/w.bin", str(dest), "w.bin", retries=0)
    msg = str(err.value)
    assert msg.startswith("w.bin: broken download") and "re-run the same command to resume" in msg
    assert "\n" not in msg and not dest.exists()
    (part,) = parts(tmp_path)
    assert f"the partial file {part} (" in msg  # the file the message says is kept is the one that is
    assert (tmp_path / part).read_bytes() == data[:kept(700_000)]
    install.fetch_url(server.url + "/w.bin", str(dest), "w.bin", retries=0)  # "the next run"
    assert dest.read_bytes() == data and parts(tmp_path) == []
    assert server.gets()[-1] == ("/w.bin", f"bytes={kept(700_000)}-")


def test_gdown_size_mismatch_is_a_one_line_broken_download_error(server, tmp_path):
    """The server announces 2 000 000 bytes and never sends more than 600 000 per answer: the sizes never add up."""
    server.files["/w.bin"] = blob(2_000_000, seed=3)
    server.short["/w.bin"] = 600_000
    dest = tmp_path / "w.bin"
    with pytest.raises(install.InstallError) as err:
        install.fetch_url(server.url + "/w.bin", str(dest), "motionmillion_3B_all.pth", retries=1)
    msg = str(err.value)
    got = 2 * kept(600_000)
    assert msg.startswith("motionmillion_3B_all.pth: broken download (")
    assert f"received {got} bytes but the server announced 2000000 bytes" in msg and "\n" not in msg
    assert not dest.exists()
    assert server.gets()[-1] == ("/w.bin", f"bytes={kept(600_000)}-")  # it did try to resume before giving up
    (part,) = parts(tmp_path)
    assert (tmp_path / part).stat().st_size == got  # kept for the next run


def test_gdown_web_page_and_http_errors(server, tmp_path):
    server.files["/drive"] = b"<!DOCTYPE html><html>Google Drive - quota exceeded</html>"
    server.content_type["/drive"] = "text/html; charset=utf-8"
    with pytest.raises(install.InstallError, match="sent a web page instead of the file"):
        install.fetch_url(server.url + "/drive", str(tmp_path / "x.pth"), "x.pth")
    assert not (tmp_path / "x.pth").exists()
    with pytest.raises(install.InstallError, match=r"y\.pth: download failed with HTTP 404"):
        install.fetch_url(server.url + "/missing", str(tmp_path / "y.pth"), "y.pth")


def test_drive_ids_go_to_gdown_as_drive_links(monkeypatch, tmp_path):
    """Without --url the checkpoints are the authors' Drive files, handed to gdown (which knows Drive's pages)."""
    import gdown
    asked = []
    monkeypatch.setattr(gdown, "download", lambda url, out, **kw: asked.append((url, kw)) or pathlib.Path(out).write_bytes(b"PK"))
    install.fetch_url(install.GDRIVE_URL.format(install.GDRIVE_IDS["t2m-7B"]), str(tmp_path / "a.pth"), "a.pth")
    (url, kw), = asked
    assert url == "https://drive.google.com/uc?id=1kFdzFp_n1CfXChd2CFXjqJCL4TdEPbiJ"
    assert gdown.parse_url.parse_url(url) == ("1kFdzFp_n1CfXChd2CFXjqJCL4TdEPbiJ", True)
    assert kw["resume"] is True and kw["retries"] == install.DOWNLOAD_RETRIES and kw["quiet"] is False
    # the FSQ tokenizer's id, from the authors' prepare/download_pretrained_models.sh, is built in
    assert install.GDRIVE_IDS["tokenizer"] == "1m8p5wDuZvpjsk1i2vZzA2Mxf9_oFVnmn"


def test_drive_quota_is_one_line_saying_what_to_do(monkeypatch, tmp_path):
    """gdown raises FileURLRetrievalError when Drive serves its quota page instead of the file."""
    import gdown
    from gdown.exceptions import FileURLRetrievalError

    def refuse(url, out, **kw):
        raise FileURLRetrievalError("Too many users have viewed or downloaded this file recently.")
    monkeypatch.setattr(gdown, "download", refuse)
    url = install.GDRIVE_URL.format(install.GDRIVE_IDS["tokenizer"])
    with pytest.raises(install.InstallError) as err:
        install.fetch_url(url, str(tmp_path / "fsq_net_6000000.pth"), "fsq_net_6000000.pth")
    msg = str(err.value)
    assert "\n" not in msg and "daily download quota" in msg and "retry in a few hours" in msg
    assert url in msg and "--from FOLDER" in msg


# -- huggingface_hub: flan-t5-xl and the gated mean/std --

def serve_text_encoder(server):
    # the first shard is larger than huggingface_hub's read size (10 MiB), so a cut in it can be resumed
    shards = {"model-00001-of-00002.safetensors": blob(12_000_000, 9), "model-00002-of-00002.safetensors": blob(10_000, 10)}
    index = {"metadata": {"total_size": 12_010_000},
             "weight_map": {"encoder.block.0.w": "model-00001-of-00002.safetensors",
                            "encoder.block.1.w": "model-00001-of-00002.safetensors",
                            "encoder.final_layer_norm.weight": "model-00002-of-00002.safetensors"}}
    hf = {"config.json": b'{"d_model": 2048}', "model.safetensors.index.json": json.dumps(index).encode(),
          "spiece.model": blob(700, 11), "tokenizer.json": b"{}", "tokenizer_config.json": b"{}",
          "special_tokens_map.json": b"{}", **shards,
          # in the repository, never wanted
          "pytorch_model-00001-of-00002.bin": blob(40_000, 12), "flax_model.msgpack": blob(999, 1), "README.md": b"#"}
    for name, body in hf.items():
        server.files[f"/google/flan-t5-xl/resolve/main/{name}"] = body
    return hf


def te_files(folder):
    return sorted(p.name for p in pathlib.Path(folder).iterdir() if not p.name.startswith("."))


def test_hf_text_encoder_resumes_a_cut_connection_and_shows_progress(server, tmp_path, capsys, caplog):
    hf = serve_text_encoder(server)
    shard = "/google/flan-t5-xl/resolve/main/model-00001-of-00002.safetensors"
    server.cut[shard] = 11_000_000
    rec = install.Record(str(tmp_path / "rec.json"))
    te = tmp_path / "flan-t5-xl"
    install.fetch_text_encoder(str(te), server.url, rec)
    wanted = [n for n in hf if not n.startswith(("pytorch_model", "flax", "README"))]
    assert te_files(te) == sorted(wanted)
    for name in wanted:
        assert (te / name).read_bytes() == hf[name], name
    chunk = __import__("huggingface_hub").constants.DOWNLOAD_CHUNK_SIZE  # whole reads are what it keeps of a cut
    assert server.gets(shard) == [(shard, None), (shard, f"bytes={11_000_000 // chunk * chunk}-")]  # resumed
    assert not any("pytorch_model" in p or "flax" in p or "README" in p for _, p, _ in server.requests)
    err = capsys.readouterr().err
    # huggingface_hub says so through its logger (whose stream handler keeps the stderr of the first test that
    # made it, so the record is checked, not this test's stderr)
    assert "Trying to resume download" in caplog.text
    assert "model-00001-of-00002.safetensors" in err and "100%" in err  # and shows its progress bar
    # everything is recorded, huggingface_hub's own notes (.cache) included, so --uninstall can remove it
    recorded = {e["path"] for e in rec.data["files"]}
    assert recorded == {str(te / n) for n in wanted} | {str(te / ".cache")}

    n = len(server.requests)
    install.fetch_text_encoder(str(te), server.url, rec)  # a second run asks for nothing
    assert server.requests[n:] == []


def test_hf_size_mismatch_is_a_one_line_broken_download_error(server, tmp_path):
    hf = serve_text_encoder(server)
    path = "/google/flan-t5-xl/resolve/main/spiece.model"
    server.head_size[path] = len(hf["spiece.model"]) + 50  # the Hub says one size, the file has another
    rec = install.Record(str(tmp_path / "rec.json"))
    with pytest.raises(install.InstallError) as err:
        install.fetch_text_encoder(str(tmp_path / "flan-t5-xl"), server.url, rec)
    msg = str(err.value)
    assert msg.startswith("flan-t5-xl/spiece.model: broken download (Consistency check failed: file should be of "
                          "size 750 but has size 700") and "\n" not in msg
    assert not (tmp_path / "flan-t5-xl" / "spiece.model").exists()  # nothing broken is left in place


def test_hf_endpoint_down_is_one_line(tmp_path):
    rec = install.Record(str(tmp_path / "rec.json"))
    with pytest.raises(install.InstallError) as err:
        install.fetch_text_encoder(str(tmp_path / "te"), "http://127.0.0.1:9", rec)
    assert "could not reach http://127.0.0.1:9" in str(err.value) and "\n" not in str(err.value)


def no_retry_waits(monkeypatch):
    """gdown's and huggingface_hub's pauses between retries, skipped: a host that refuses every connection fails in
    milliseconds instead of half a minute."""
    import importlib
    import time
    monkeypatch.setattr(importlib.import_module("gdown.download"), "_wait_or_cancel", lambda **kw: None)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)


def test_offline_mean_std_is_one_line_naming_the_code_repository_first(env, monkeypatch, capsys):
    """No connection at all (the code repository and the Hub at a closed loopback port): the one error line says what
    happened at the code repository, then at its fallback, and speaks of no partial file, as none is kept."""
    no_retry_waits(monkeypatch)
    monkeypatch.setattr(install, "MEAN_STD_URL", "http://127.0.0.1:9/{}.npy")
    monkeypatch.setattr(install.shutil, "disk_usage", lambda p: type("U", (), {"free": 10 ** 12})())
    assert install.main(["--weights", "7b", "--no-env", "--no-blender", "--hf-endpoint", "http://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err
    line = one_error_line(err)
    assert line.startswith("[install] error: mean.npy: not downloaded: from the code repository, no connection to "
                           "127.0.0.1:9 (Connection refused); from its fallback, the Hugging Face dataset "
                           "InternRobotics/MotionMillion, could not reach http://127.0.0.1:9 ("), line
    assert line.endswith("check your connection (or HF_ENDPOINT) and re-run"), line
    assert "partial" not in err and ".part" not in err and "resume" not in line
    model_dir = pathlib.Path(env["MOTIONMILL_DATA"]) / "models" / "motionmillion-7b"
    assert os.listdir(model_dir) == []  # no partial file, no staging folder


def test_a_cut_code_repository_copy_is_replaced_by_the_fallbacks(server, monkeypatch, capsys, tmp_path):
    """The code repository's copy keeps breaking off (gdown keeps its partial file), the Hugging Face dataset has the
    file: it is placed, the partial file is removed, and one warning said why the fallback was used."""
    data = (TINY / "mean.npy").read_bytes()
    server.files["/gh/mean.npy"] = data
    server.short["/gh/mean.npy"] = 64
    server.files["/datasets/InternRobotics/MotionMillion/resolve/main/mean_std/Mean.npy"] = data
    monkeypatch.setattr(install, "MEAN_STD_URL", server.url + "/gh/{}.npy")
    monkeypatch.setattr(install, "DOWNLOAD_RETRIES", 0)
    dest = tmp_path / "mean.npy"
    assert install.fetch_statistics("mean", str(dest), {}, server.url) == str(dest)
    assert dest.read_bytes() == data and sorted(os.listdir(tmp_path)) == ["mean.npy"]
    warning = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warning) == 1 and "broken download (" in warning[0] and "trying the Hugging Face dataset" in warning[0]


def test_help_gives_the_default_model_dir_the_code_uses(env, monkeypatch, capsys, tmp_path):
    """install.py --help, README.md and docs/install.md name the default model directory alike, and it is where the
    weights step puts the model (here, with the data folder of the platform)."""
    monkeypatch.delenv("MOTIONMILL_DATA")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(install.sys, "platform", "linux")
    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps at hyphens too
    with pytest.raises(SystemExit):
        install.main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    named = "<data dir>/motionmill/models/motionmillion-7b"
    where = install.model_dir_for(install.argparse.Namespace(model_dir=None), "7B")
    assert where == str(tmp_path / "xdg" / "motionmill" / "models" / "motionmillion-7b")  # <data dir> = XDG_DATA_HOME
    assert f"default: {named}," in help_text and f"here: {where})" in help_text
    for doc in ("README.md", "docs/install.md"):
        text = (ROOT / doc).read_text(encoding="utf-8")
        assert named in text and "<data dir>/models/" not in text, doc


@pytest.fixture
def tiny_release(monkeypatch):
    """tiny_release(size): the tiny conformance model stands for the release `size` (its preset's shapes are the tiny
    model's), so the installer's release path (download or adopt, verify, manifest) runs end to end on it."""
    from models import manifest

    def use(size):
        monkeypatch.setitem(manifest.PRESETS, size, {**manifest.PRESETS[size], **TINY_PRESET})
    return use


def serve_tiny_text_encoder(server):
    """The tiny T5 on the loopback Hub, as flan-t5-xl is laid out there (an index naming its safetensors shard)."""
    te = TINY / "text_encoder"
    index = {"metadata": {"total_size": (te / "model.safetensors").stat().st_size},
             "weight_map": {"shared.weight": "model.safetensors"}}
    hf = {f.name: f.read_bytes() for f in te.iterdir()}
    hf.update({"model.safetensors.index.json": json.dumps(index).encode(), "special_tokens_map.json": b"{}",
               "spiece.model": blob(700, 11)})
    for name, body in hf.items():
        server.files[f"/google/flan-t5-xl/resolve/main/{name}"] = body
    return hf


def serve_release(server, tmp_path, size="3B"):
    """The release on the loopback server, made of the tiny model's stand-ins: Drive-style checkpoints saved as the
    training scripts save them (the t2m one with a DeepSpeed optimizer), mean/std at the code repository's URL
    (install.MEAN_STD_URL, pointed here by the caller or by --url), flan-t5-xl on a Hub."""
    work = tmp_path / "standins"
    work.mkdir(exist_ok=True)
    files = {"/gd/tok": save_tokenizer_training(work / "tok.pth").read_bytes(),
             f"/gd/t2m{size}": save_t2m_training(work / "t2m.pth", optimizer_numel=1000).read_bytes(),
             "/gh/mean.npy": (TINY / "mean.npy").read_bytes(), "/gh/std.npy": (TINY / "std.npy").read_bytes()}
    server.files.update(files)
    hf = serve_tiny_text_encoder(server)
    args = ["--url", f"tokenizer={server.url}/gd/tok", "--url", f"t2m-{size}={server.url}/gd/t2m{size}",
            "--url", f"mean={server.url}/gh/mean.npy", "--url", f"std={server.url}/gh/std.npy",
            "--hf-endpoint", server.url]
    return files, hf, args


def test_weights_download_end_to_end_then_uninstall(env, server, monkeypatch, capsys, tiny_release, tmp_path):
    tiny_release("3B")
    files, hf, args = serve_release(server, tmp_path, "3B")
    server.cut["/gd/t2m3B"] = 700_000
    monkeypatch.setattr(install.shutil, "disk_usage", lambda p: type("U", (), {"free": 10 ** 12})())
    assert install.main(["--weights", "3b", "--no-env", "--no-blender", *args]) == 0
    model_dir = pathlib.Path(env["MOTIONMILL_DATA"]) / "models" / "motionmillion-3b"
    assert (model_dir / "fsq_net_6000000.pth").read_bytes() == files["/gd/tok"]
    assert (model_dir / "motionmillion_3B_all.pth").read_bytes() == files["/gd/t2m3B"]
    assert (model_dir / "mean.npy").read_bytes() == files["/gh/mean.npy"]
    assert server.gets("/gd/t2m3B") == [("/gd/t2m3B", None), ("/gd/t2m3B", f"bytes={kept(700_000)}-")]
    te = model_dir / "flan-t5-xl"
    assert te_files(te) == sorted(hf)
    assert (te / "model.safetensors").read_bytes() == hf["model.safetensors"]
    cfg = load_config(model_dir)
    assert (cfg.t2m.n_layer, cfg.t2m.n_embd, cfg.t2m.file, cfg.t2m.preset) == (2, 64, "motionmillion_3B_all.pth", "3B")
    assert cfg.missing_files() == []
    settings = json.loads(pathlib.Path(env["MOTIONMILL_CONFIG"]).read_text())
    assert settings["model_dir"] == str(model_dir)
    out = capsys.readouterr()
    assert "about 18 GB of disk" in out.out and "2.5 GB for the decoder" in out.out
    assert "Retrying (1/5)" in out.err  # gdown's own resume
    assert "model directory ready" in out.out and "both checkpoints opened and checked" in out.out

    # a second run downloads nothing
    n = len(server.requests)
    assert install.main(["--weights", "3b", "--no-env", "--no-blender", *args]) == 0
    assert server.requests[n:] == []

    # uninstall: answering no keeps the weights, --yes removes them (huggingface_hub's .cache notes too)
    (model_dir / "my_notes.txt").write_text("mine")
    install.uninstall(False, ask=lambda q: "n")
    assert json.loads(pathlib.Path(env["MOTIONMILL_CONFIG"]).read_text()) == {"model_dir": str(model_dir)}
    assert (model_dir / "motionmillion_3B_all.pth").exists() and (te / "config.json").exists()
    assert not (model_dir / "config.json").exists()  # the manifest was written, not downloaded
    install.uninstall(True)
    assert sorted(os.listdir(model_dir)) == ["my_notes.txt"]
    assert not os.path.exists(install.record_path())
    assert not pathlib.Path(env["MOTIONMILL_CONFIG"]).exists()  # it held only our keys


def test_mean_std_come_from_the_code_repository_without_a_login(env, server, monkeypatch, capsys, tiny_release,
                                                                 tmp_path):
    """Without --url mean/std come from the code repository's commit (no token), checked against their hashes."""
    tiny_release("3B")
    files, hf, args = serve_release(server, tmp_path, "3B")
    args = args[:4] + args[8:]  # tokenizer and t2m-3B URLs, the HF endpoint; no mean/std URLs
    # and the tokenizer arrives as a plain zip archive holding it under another name: it is unpacked in place
    inner = tmp_path / "net_6000000.pth"
    inner.write_bytes(files["/gd/tok"])
    server.files["/gd/tok"] = zip_archive(tmp_path / "fsq.zip", {"fsq/net_6000000.pth": inner}).read_bytes()
    monkeypatch.setattr(install, "MEAN_STD_URL", server.url + "/gh/{}.npy")
    monkeypatch.setattr(install.shutil, "disk_usage", lambda p: type("U", (), {"free": 10 ** 12})())
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert install.main(["--weights", "3b", "--no-env", "--no-blender", *args]) == 0
    model_dir = pathlib.Path(env["MOTIONMILL_DATA"]) / "models" / "motionmillion-3b"
    assert (model_dir / "mean.npy").read_bytes() == files["/gh/mean.npy"]
    assert not any("/datasets/" in p for _, p, _ in server.requests)
    assert (model_dir / "fsq_net_6000000.pth").read_bytes() == inner.read_bytes()
    assert not any(n.startswith(".unpack") or n.endswith(".zip") for n in os.listdir(model_dir))
    assert install.MEAN_STD_SHA256["mean"] == hashlib.sha256(files["/gh/mean.npy"]).hexdigest()


def test_mean_std_come_from_the_gated_hf_dataset_with_a_token(env, server, monkeypatch, capsys, tiny_release,
                                                             tmp_path):
    """When the code repository's copy cannot be had, mean/std come from <hf endpoint>/datasets/InternRobotics/
    MotionMillion, with HF_TOKEN."""
    import huggingface_hub.constants
    tiny_release("3B")
    files, hf, args = serve_release(server, tmp_path, "3B")
    args = args[:4] + args[8:]  # tokenizer and t2m-3B URLs, the HF endpoint; no mean/std URLs
    monkeypatch.setattr(install, "MEAN_STD_URL", server.url + "/moved/{}.npy")  # 404
    for key, name in install.MEAN_STD_FILES.items():
        path = f"/datasets/InternRobotics/MotionMillion/resolve/main/{name}"
        server.files[path] = files[f"/gh/{key}.npy"]
        server.tokens[path] = "hf_secret"
    monkeypatch.setattr(install.shutil, "disk_usage", lambda p: type("U", (), {"free": 10 ** 12})())
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(pathlib.Path(env["HOME"]) / "no-token"))
    assert install.main(["--weights", "3b", "--no-env", "--no-blender", *args]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "mean.npy" in line and "gated Hugging Face repository" in line and "HF_TOKEN" in line
    assert not any(p.startswith("/gd/") for _, p, _ in server.requests)  # failed before the big downloads
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    assert install.main(["--weights", "3b", "--no-env", "--no-blender", *args]) == 0
    model_dir = pathlib.Path(env["MOTIONMILL_DATA"]) / "models" / "motionmillion-3b"
    assert (model_dir / "mean.npy").read_bytes() == files["/gh/mean.npy"]
    assert (model_dir / "std.npy").read_bytes() == files["/gh/std.npy"]
    assert not (model_dir / ".hf-download").exists()


def test_not_enough_disk_space(env, server, monkeypatch, capsys, tmp_path):
    _, _, args = serve_release(server, tmp_path, "7B")
    monkeypatch.setattr(install.shutil, "disk_usage", lambda p: type("U", (), {"free": 3 * 10 ** 9})())
    assert install.main(["--weights", "7b", "--no-env", "--no-blender", *args]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "not enough disk space" in line and "2.8 GB free" in line and "25.1 GB" in line
    assert server.requests == []


def test_unknown_tokenizer_link_is_a_clear_error(env, server, monkeypatch, capsys, tmp_path):
    files, hf, args = serve_release(server, tmp_path, "7B")
    args = args[2:]  # no tokenizer URL, and (as if) no Drive id for it
    monkeypatch.delenv("MOTIONMILL_URL_TOKENIZER", raising=False)
    monkeypatch.setitem(install.GDRIVE_IDS, "tokenizer", None)
    monkeypatch.setattr(install.shutil, "disk_usage", lambda p: type("U", (), {"free": 10 ** 12})())
    assert install.main(["--weights", "7b", "--no-env", "--no-blender", *args]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "no download link is known for fsq_net_6000000.pth" in line and "--url tokenizer=URL" in line


def bare_python311():
    """A Python 3.11 without gdown (as the one that runs install.py before .venv exists), or None."""
    exe = shutil.which("python3.11", path=os.environ.get("PATH"))
    if not exe:
        return None
    out = subprocess.run([exe, "-c", "import sys; print(sys.executable)\ntry:\n import gdown\nexcept ImportError:\n"
                          " print('bare')"], capture_output=True, text=True)
    lines = out.stdout.split()
    return lines[0] if out.returncode == 0 and lines[-1:] == ["bare"] else None


def test_bare_python_runs_the_download_step_with_the_venv_python(env, server, tmp_path):
    """install.py on a Python without gdown hands the weights step to .venv's Python (here the test venv's)."""
    bare = bare_python311()
    if bare is None:
        pytest.skip("no Python 3.11 without gdown on PATH")
    if shutil.disk_usage(tmp_path).free < install.NEEDS["3B"]["disk_gb"] * 10 ** 9:
        pytest.skip("the 3B release's disk check needs 18 GB free")
    files, hf, args = serve_release(server, tmp_path, "3B")
    venv_dir = tmp_path / "venv"
    (venv_dir / "bin").mkdir(parents=True)
    fake_exe(venv_dir / "bin" / "python", f"#!/bin/sh\nexec {PY} \"$@\"\n")
    child = {**os.environ, **{k: v for k, v in env.items() if k != "bin"}}
    out = subprocess.run([bare, str(ROOT / "install.py"), "--weights", "3b", "--no-env", "--no-blender",
                          "--venv", str(venv_dir), *args], capture_output=True, text=True, env=child, timeout=300,
                         cwd=str(ROOT))
    assert f"downloading with {venv_dir / 'bin' / 'python'} (torch, gdown, huggingface_hub)" in out.stdout
    model_dir = pathlib.Path(env["MOTIONMILL_DATA"]) / "models" / "motionmillion-3b"
    assert (model_dir / "motionmillion_3B_all.pth").read_bytes() == files["/gd/t2m3B"]
    assert "100%" in out.stderr  # the libraries' progress bars reach the user
    # the files are the tiny model's, not the 3B's: the step opens them and says so, and calls nothing ready
    assert out.returncode == 1
    line = one_error_line(out.stderr)
    assert line.endswith("motionmillion_3B_all.pth has 2 layers of width 64; the 3B preset needs 24 of width 3200 "
                         f"({model_dir / 'motionmillion_3B_all.pth'})"), line
    assert "ready" not in out.stdout and not (model_dir / "config.json").exists()

    # a .venv without the download libraries: one line saying how to get them
    (venv_dir / "bin" / "python").unlink()
    fake_exe(venv_dir / "bin" / "python", f"#!/bin/sh\nexec {bare} \"$@\"\n")
    out = subprocess.run([bare, str(ROOT / "install.py"), "--weights", "3b", "--no-env", "--no-blender",
                          "--venv", str(venv_dir), "--model-dir", str(tmp_path / "other"), *args],
                         capture_output=True, text=True, env=child, timeout=300, cwd=str(ROOT))
    assert out.returncode == 1
    line = one_error_line(out.stderr)
    assert "gdown missing" in line and "huggingface_hub missing" in line and "without --no-env" in line


def test_download_libraries_are_pinned_and_checked(monkeypatch):
    """The libraries the weights step imports are pinned with the others; a Python whose versions differ from the
    pins does not run the step itself."""
    import importlib.metadata as md
    pins = dict(spec.split("==") for spec in install.RUNTIME if "==" in spec)
    assert set(install.DOWNLOAD_LIBS) == {"gdown", "huggingface_hub"} <= set(pins)
    have = {n: md.version(n) for n in install.DOWNLOAD_LIBS}
    expected = [f"{n} {have[n]} (want {pins[n]})" for n in install.DOWNLOAD_LIBS if have[n] != pins[n]]
    assert install.download_libs_missing() == expected
    monkeypatch.setattr(install, "RUNTIME", [s for s in install.RUNTIME if not s.startswith("gdown")] + ["gdown==0.0.1"])
    assert f"gdown {have['gdown']} (want 0.0.1)" in install.download_libs_missing()


# ---- adopting a downloaded release -------------------------------------------------------------------------------

def generated_tokens(model_dir, prompt_file="gen_00.npz"):
    """The tokens `python -m backend generate` makes from `model_dir` for a conformance prompt, as check.py runs it,
    and the tokens the reference made from the same weights."""
    import numpy as np
    expected = np.load(TINY.parent / "expected" / prompt_file)
    out = model_dir.parent / ("gen-" + model_dir.name)
    run = subprocess.run([PY, "-m", "backend", "generate", "--model-dir", str(model_dir), "--prompt",
                          str(expected["prompt"]) if "prompt" in expected else PROMPT0, "--sampling", "greedy",
                          "--max-tokens", "50", "--device", "cpu", "--dtype", "float32", "--out", str(out), "--quiet"],
                         capture_output=True, text=True, cwd=str(ROOT), timeout=300)
    assert run.returncode == 0, run.stderr
    return np.load(out / "000.npz")["tokens"].tolist(), expected["tokens"].tolist()


PROMPT0 = json.loads((TINY.parent / "expected" / "index.json").read_text())[0]["prompt"]


def test_adopt_reference_layout_by_linking(env, tmp_path, tiny_release, capsys):
    """The reference's own checkout (DeepSpeed-laden t2m, tokenizer with its optimizer, the HF-cache flan-t5-xl, mean/std
    under vector_272 beside a decoy) is found by content, linked, verified, and then generates the reference's tokens."""
    tiny_release("7B")
    src = reference_layout(tmp_path / "MotionMillion-Codes")
    assert install.main(["--from", str(src), "--no-env", "--no-blender"]) == 0
    model_dir = pathlib.Path(env["MOTIONMILL_DATA"]) / "models" / "motionmillion-7b"
    assert os.path.islink(model_dir / "motionmillion_7B_all.pth")
    assert (model_dir / "mean.npy").read_bytes() == (TINY / "mean.npy").read_bytes()  # not the 263-dim decoy
    assert "snapshots" in os.readlink(model_dir / "flan-t5-xl")
    cfg = load_config(model_dir)
    assert (cfg.t2m.n_layer, cfg.t2m.preset) == (2, "7B") and cfg.missing_files() == []
    assert json.loads(pathlib.Path(env["MOTIONMILL_CONFIG"]).read_text())["model_dir"] == str(model_dir)
    assert "model directory ready" in capsys.readouterr().out
    tokens, reference = generated_tokens(model_dir)
    assert tokens == reference


def test_adopt_zip_named_and_zip_archived_copies_by_copying(env, tmp_path, tiny_release):
    """fsq.zip in torch's own zip format is used as it is; t2m_7B_all.zip, a plain zip archive holding the checkpoint
    under another name, is unpacked (streamed) into the model directory."""
    tiny_release("7B")
    src = tmp_path / "downloads"
    (src / "flan-t5-xl").mkdir(parents=True)
    save_tokenizer_training(src / "fsq.zip")
    save_t2m_training(tmp_path / "net_last.pth")
    zip_archive(src / "t2m_7B_all.zip", {"t2m_7B_all/net_last.pth": tmp_path / "net_last.pth"})
    for f in (TINY / "text_encoder").iterdir():
        shutil.copy(f, src / "flan-t5-xl" / f.name)
    for name in ("mean.npy", "std.npy"):
        shutil.copy(TINY / name, src / name)
    model_dir = tmp_path / "mymodel"
    assert install.main(["--from", str(src), "--copy", "--model-dir", str(model_dir), "--no-env", "--no-blender"]) == 0
    assert not os.path.islink(model_dir / "fsq_net_6000000.pth")
    assert (model_dir / "fsq_net_6000000.pth").read_bytes() == (src / "fsq.zip").read_bytes()
    assert (model_dir / "motionmillion_7B_all.pth").read_bytes() == (tmp_path / "net_last.pth").read_bytes()
    assert not any(n.startswith(".unpack") for n in os.listdir(model_dir))
    assert (src / "t2m_7B_all.zip").exists()  # the user's archive is theirs: kept
    tokens, reference = generated_tokens(model_dir)
    assert tokens == reference


def test_adopt_refuses_what_would_not_load_in_one_line(env, tmp_path, tiny_release, capsys):
    """Files found by name but broken, or another model's, are refused with one line, and nothing is called ready."""
    tiny_release("7B")
    src = reference_layout(tmp_path / "MotionMillion-Codes")
    tok = src / "checkpoints" / "pretrained_models" / "fsq_net_6000000.pth"
    tok.write_bytes(tok.read_bytes()[:5000])  # truncated: not recognised as a tokenizer any more
    assert install.main(["--from", str(src), "--no-env", "--no-blender"]) == 1
    err = capsys.readouterr()
    line = one_error_line(err.err)
    assert "could not find fsq_net_6000000.pth" in line and "ready" not in err.out
    tok.write_bytes(b"")
    shutil.rmtree(pathlib.Path(env["MOTIONMILL_DATA"]) / "models")
    assert install.main(["--from", str(src), "--no-env", "--no-blender"]) == 1
    assert "could not find fsq_net_6000000.pth" in one_error_line(capsys.readouterr().err)


def test_adopt_a_checkpoint_of_no_release_size_is_refused(env, tmp_path, capsys):
    """Without the tiny preset the stand-in is what it is: a 2-layer decoder of width 64, which no release is."""
    src = reference_layout(tmp_path / "MotionMillion-Codes")
    assert install.main(["--from", str(src), "--no-env", "--no-blender"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "motionmillion_7B_all.pth: its decoder matches neither release size (3B: 24 layers of width 3200, 7B: 36 " \
           "layers of width 4096)" in line


def test_adopt_incomplete_folder_names_what_is_missing(env, tmp_path, tiny_release, capsys):
    tiny_release("7B")
    src = tmp_path / "downloads"
    src.mkdir()
    save_t2m_training(src / "motionmillion_7B_all.pth", optimizer_numel=10)
    shutil.copy(TINY / "mean.npy", src / "mean.npy")
    assert install.main(["--from", str(src), "--no-env", "--no-blender"]) == 1
    line = one_error_line(capsys.readouterr().err)
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
    assert "motionmill/motionmill_common/folders.py" in names and "motionmill/motionmill_common/client.py" in names
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
def test_uninstall_removes_exactly_what_was_recorded(env, tmp_path, tiny_release):
    pytest.importorskip("torch", reason="adopting a release opens its checkpoints (torch); the bpy-only LTS "
                                        "environments run the Blender half of the installer in the other tests")
    tiny_release("7B")
    blender = fake_exe(tmp_path / "blender", FAKE_BLENDER)
    src = reference_layout(tmp_path / "MotionMill-Codes")
    files = {p.relative_to(src): p.read_bytes() for p in src.rglob("*") if p.is_file()}
    config = pathlib.Path(env["MOTIONMILL_CONFIG"])
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"theme": "dark"}))
    other_addon = pathlib.Path(env["BLENDER_USER_SCRIPTS"]) / "addons" / "other_addon" / "__init__.py"
    other_addon.parent.mkdir(parents=True)
    other_addon.write_text("bl_info = {}")
    other_ext = pathlib.Path(env["BLENDER_USER_EXTENSIONS"]) / "user_default" / "other_ext" / "blender_manifest.toml"
    other_ext.parent.mkdir(parents=True)
    other_ext.write_text('id = "other_ext"')
    assert install.main(["--blender", str(blender), "--from", str(src), "--no-env"]) == 0
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
