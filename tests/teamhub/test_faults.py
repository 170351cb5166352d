"""The team hub under faults, driven by the stock ``huggingface_hub`` client: a flipped byte in a stored blob is
never served as valid, a server SIGKILLed in the middle of a push leaves no revision and no leftover behind, and
parallel downloads and pushes neither corrupt nor lose anything.

Every wait polls with a deadline; none guesses how long something takes.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import huggingface_hub.lfs
import pytest
from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import HfHubHTTPError

from kaiyuan.serve.server import BackgroundServer, free_port
from kaiyuan.teamhub.app import STALE_UPLOAD_SECONDS, create_hub_app
from kaiyuan.teamhub.config import HubLocation
from tests.conftest import run_cli
from tests.teamhub.seed import seed

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

WEIGHTS = random.Random(14).randbytes(3 * (1 << 20) + 321)  # > 3 blob-store chunks: a last chunk to hold back


@pytest.fixture
def online(monkeypatch, home):
    """The client allowed to talk to our servers (tests/conftest.py sets HF_HUB_OFFLINE=1), over LFS, not Xet."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(name, "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30, every: float = 0.01) -> Any:
    """``check()``'s first truthy answer, polled until ``timeout`` seconds have passed (then the test fails)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_folder(root: Path, files: dict[str, bytes]) -> Path:
    for path, content in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(content)
    return root


def verify(monkeypatch, capsys, storage: Path) -> tuple[int, str]:
    code, out, err = run_cli(monkeypatch, capsys, "hub", "verify", "--storage", storage)
    return code, out + err


# -- a flipped byte ------------------------------------------------------------------------------------------------


def flip(path: Path, at: int) -> None:
    """One bit of one byte of the file, in place (same size)."""
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_flipped_byte_is_never_served_as_valid(online, tmp_path, monkeypatch, capsys):
    storage = tmp_path / "hub"
    app = create_hub_app(storage)
    hub = app.state.hub
    damaged = {"model.safetensors": WEIGHTS, "ranged.bin": random.Random(1).randbytes((1 << 20) + 5),
               "shard.bin": random.Random(2).randbytes(3 * (1 << 20) + 7)}
    commit = seed(hub, "team/tiny", {"config.json": b'{"model_type": "tiny"}\n', **damaged})
    oids = {path: hashlib.sha256(data).hexdigest() for path, data in damaged.items()}
    for path, data in damaged.items():
        flip(hub.blobs.path(oids[path]), len(data) // 2)

    with BackgroundServer(app) as server:
        def url(path: str) -> str:
            return f"{server.url}/team/tiny/resolve/main/{path}"

        def refused(answer: httpx.Response) -> bool:
            return (answer.status_code == 500 and answer.headers["x-error-code"] == "CorruptBlob"
                    and "kaiyuan hub verify" in answer.headers["x-error-message"])

        # the whole of it: hashed as it is sent, the connection drops before the last chunk (a short body)
        got = bytearray()
        with pytest.raises(httpx.RemoteProtocolError), httpx.stream("GET", url("model.safetensors")) as whole:
            assert whole.status_code == 200 and whole.headers["content-length"] == str(len(WEIGHTS))
            for chunk in whole.iter_raw():
                got += chunk
        assert 0 < len(got) < len(WEIGHTS)
        # once found, it is refused outright, whole or in part
        assert refused(httpx.get(url("model.safetensors")))
        assert refused(httpx.get(url("model.safetensors"), headers={"Range": "bytes=0-9"}))
        # a part of a blob nothing read yet: the whole blob is checked before any of it is sent
        assert refused(httpx.get(url("ranged.bin"), headers={"Range": "bytes=0-9"}))
        intact = httpx.get(url("config.json"), headers={"Range": "bytes=0-4"})
        assert (intact.status_code, intact.content) == (206, b'{"mod')

        # huggingface_hub: the cut GET is resumed with a Range (from the whole chunks it wrote: 64 KiB here, not
        # 10 MiB), which is refused; nothing complete is left behind
        monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1 << 16)
        kwargs = {"endpoint": server.url, "token": False}
        with pytest.raises(HfHubHTTPError) as failed:
            hf_hub_download("team/tiny", "shard.bin", cache_dir=tmp_path / "cache", **kwargs)
        assert failed.value.response.status_code == 500 and "kaiyuan hub verify" in str(failed.value)
        cached = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
        assert not [p for p in cached if p.name in (oids["shard.bin"], "shard.bin")], cached
        assert all(p.stat().st_size < len(damaged["shard.bin"]) for p in cached), cached
        for path in damaged:
            with pytest.raises(HfHubHTTPError):
                hf_hub_download("team/tiny", path, local_dir=tmp_path / "local", **kwargs)
        assert [p.name for p in (tmp_path / "local").iterdir()] in ([], [".cache"])
        assert all(p.stat().st_size < len(WEIGHTS) for p in (tmp_path / "local").rglob("*") if p.is_file())
        config = hf_hub_download("team/tiny", "config.json", cache_dir=tmp_path / "cache", **kwargs)
        assert Path(config).read_bytes() == b'{"model_type": "tiny"}\n'

        code, out = verify(monkeypatch, capsys, storage)
        assert code == 1 and "3 problem(s)" in out, out
        for path, oid in oids.items():
            assert f"corrupt: team/tiny@{commit.sha} (main) {path}: blob {oid} no longer matches" in out

        # repaired (a new file in its place): checked again, and served
        fixed = hub.blobs.path(oids["model.safetensors"]).with_name("repaired")
        fixed.write_bytes(WEIGHTS)
        os.replace(fixed, hub.blobs.path(oids["model.safetensors"]))
        part = httpx.get(url("model.safetensors"), headers={"Range": "bytes=0-9"})
        assert (part.status_code, part.content) == (206, WEIGHTS[:10])
        path = hf_hub_download("team/tiny", "model.safetensors", cache_dir=tmp_path / "again", **kwargs)
        assert Path(path).read_bytes() == WEIGHTS


# -- SIGKILL in the middle of a push ---------------------------------------------------------------------------------


class HubProcess:
    """``kaiyuan hub serve`` as a real process on ``storage``."""

    def __init__(self, storage: Path, log: Path) -> None:
        self.storage, self.log, self.port = storage, log, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> HubProcess:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "kaiyuan", "hub", "serve", "--port", str(self.port),
                                          "--storage", str(self.storage)], stdout=log, stderr=subprocess.STDOUT)
        wait_for(f"the hub on {self.url}", self.healthy, timeout=60, every=0.05)
        return self

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"the hub exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}")
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        self.proc = None


class Paused:
    """The file an LFS PUT reads its body from, stopping after ``pause_at`` bytes until ``go`` is set."""

    def __init__(self, file: Any, pause_at: int, go: threading.Event) -> None:
        self.file, self.pause_at, self.go, self.sent = file, pause_at, go, 0

    def read(self, size: int = -1) -> bytes:
        if self.sent >= self.pause_at:
            assert self.go.wait(60), "the test never let the upload go on"
        chunk = self.file.read(size)
        self.sent += len(chunk)
        return chunk

    def __iter__(self) -> Iterator[bytes]:  # what makes httpx stream it (by read, with its Content-Length)
        return iter(lambda: self.read(1 << 16), b"")

    def __getattr__(self, name: str) -> Any:  # fileno, tell, seek: the real file's
        return getattr(self.file, name)


def test_a_push_killed_mid_upload_leaves_nothing_and_can_be_retried(online, tmp_path, monkeypatch, capsys):
    storage = tmp_path / "hub"
    token = HubLocation(str(storage)).open_db().create_token("ci", "write", "team")
    big = random.Random(64).randbytes(64 << 20)
    files = {"config.json": b'{"hidden_size": 64}\n', "model.safetensors": big}
    folder = write_folder(tmp_path / "src", files)
    temp = storage / "blobs" / "tmp"

    go, pausing = threading.Event(), [True]
    real_backoff = huggingface_hub.lfs.http_backoff

    def paused_put(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        """The LFS PUT stops after 16 MiB until the server is dead, and is not retried (its failure is the point)."""
        if method == "PUT" and pausing[0]:
            kwargs["data"] = Paused(kwargs["data"], 16 << 20, go)
            kwargs["max_retries"] = 0
        return real_backoff(method, url, *args, **kwargs)

    monkeypatch.setattr(huggingface_hub.lfs, "http_backoff", paused_put)
    hub = HubProcess(storage, tmp_path / "hub.log").start()
    try:
        api = HfApi(endpoint=hub.url, token=token)
        api.create_repo("team/big")
        before = api.model_info("team/big").sha
        failed: list[BaseException] = []

        def push() -> None:
            try:
                api.upload_folder(repo_id="team/big", folder_path=folder, commit_message="weights")
            except BaseException as exc:  # noqa: BLE001 - what the test checks
                failed.append(exc)

        pusher = threading.Thread(target=push, daemon=True)
        pusher.start()

        def partial_upload() -> Path | None:
            found = [p for p in temp.glob("upload-*") if p.stat().st_size >= 8 << 20] if temp.is_dir() else []
            return found[0] if found else None

        leftover = wait_for("the LFS upload to be streaming into blobs/tmp", partial_upload)
        hub.kill(signal.SIGKILL)
        go.set()
        pusher.join(timeout=60)
        assert not pusher.is_alive() and len(failed) == 1, failed
        assert "Error while uploading 'model.safetensors'" in str(failed[0])
        assert type(failed[0].__cause__).__module__.startswith("httpx"), repr(failed[0].__cause__)  # the network
        assert leftover.exists() and leftover.stat().st_size < len(big)  # what the killed server left

        # an upload in progress writes its file at least every few seconds; a file untouched for longer than
        # STALE_UPLOAD_SECONDS is a killed server's leftover (another hub process on this storage may be mid-upload)
        stale = time.time() - STALE_UPLOAD_SECONDS - 1
        os.utime(leftover, (stale, stale))
        hub.start()  # the same storage: the leftover is swept, no revision landed
        assert not list(temp.glob("upload-*"))
        assert api.model_info("team/big").sha == before
        assert api.list_repo_files("team/big") == []
        assert not HubLocation(str(storage)).open_blobs().has(hashlib.sha256(big).hexdigest())
        code, out = verify(monkeypatch, capsys, storage)
        assert code == 0 and out.startswith("clean:"), out

        pausing[0] = False
        info = api.upload_folder(repo_id="team/big", folder_path=folder, commit_message="weights, again")
        assert info.oid != before and api.model_info("team/big").sha == info.oid
        local = Path(snapshot_download("team/big", endpoint=hub.url, token=token, cache_dir=tmp_path / "cache"))
        assert files_of(local) == files
        assert verify(monkeypatch, capsys, storage)[0] == 0
    finally:
        go.set()
        hub.kill(signal.SIGTERM)


# -- downloads and pushes at once ----------------------------------------------------------------------------------


def test_parallel_downloads_while_two_pushes_race(online, tmp_path, monkeypatch, capsys):
    storage = tmp_path / "hub"
    app = create_hub_app(storage)
    hub = app.state.hub
    weights = random.Random(8).randbytes(8 << 20)
    seed(hub, "team/big", {"config.json": b"{}", "model.safetensors": weights})
    token = hub.db.create_token("ci", "write", "team")
    pushed = {name: {f"{name}/config.json": f'{{"part": "{name}"}}\n'.encode(),
                     f"{name}/weights.safetensors": random.Random(name).randbytes(2 << 20)} for name in ("a", "b")}
    folders = {name: write_folder(tmp_path / f"src-{name}", {p.split("/", 1)[1]: c for p, c in these.items()})
               for name, these in pushed.items()}

    with BackgroundServer(app) as server:
        api = HfApi(endpoint=server.url, token=token)
        api.create_repo("team/w")
        base = api.upload_file(path_or_fileobj=b"# w\n", path_in_repo="README.md", repo_id="team/w").oid
        start = threading.Barrier(10)

        def download(i: int) -> bytes:
            start.wait(timeout=30)
            return Path(hf_hub_download("team/big", "model.safetensors", endpoint=server.url, token=False,
                                        cache_dir=tmp_path / f"cache-{i}")).read_bytes()

        def push(name: str) -> str | HfHubHTTPError:
            """Both start from ``base``: the branch can move for only one of them."""
            start.wait(timeout=30)
            try:
                return api.upload_folder(repo_id="team/w", folder_path=folders[name], path_in_repo=name,
                                         parent_commit=base, commit_message=f"add {name}").oid
            except HfHubHTTPError as exc:
                return exc

        with ThreadPoolExecutor(10) as pool:
            downloads = [pool.submit(download, i) for i in range(8)]
            pushes = {name: pool.submit(push, name) for name in pushed}
            got = [f.result(timeout=120) for f in downloads]
            outcome = {name: f.result(timeout=120) for name, f in pushes.items()}

        assert all(data == weights for data in got)  # byte-identical, every one
        landed = [name for name, result in outcome.items() if isinstance(result, str)]
        lost = [name for name, result in outcome.items() if isinstance(result, HfHubHTTPError)]
        assert len(landed) == len(lost) == 1, outcome
        refusal = outcome[lost[0]]
        # the Hub's 412 text, whether it lost before its commit began or at the branch's compare-and-set
        assert refusal.response.status_code == 412 and "A commit has happened since" in str(refusal), refusal
        head = api.model_info("team/w").sha
        assert head == outcome[landed[0]]
        retried = api.upload_folder(repo_id="team/w", folder_path=folders[lost[0]], path_in_repo=lost[0],
                                    parent_commit=head, commit_message=f"add {lost[0]}, again")
        assert api.model_info("team/w").sha == retried.oid
        local = Path(snapshot_download("team/w", endpoint=server.url, token=token, cache_dir=tmp_path / "w"))
        assert files_of(local) == {"README.md": b"# w\n", **pushed["a"], **pushed["b"]}
    code, out = verify(monkeypatch, capsys, storage)
    assert code == 0 and out.startswith("clean:"), out
