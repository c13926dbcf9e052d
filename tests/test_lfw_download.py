"""``facetransfer data download lfw`` against a loopback HTTP server (no network): resume, atomic
install, MD5 and per-person count checks."""

from __future__ import annotations

import hashlib
import io
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from facetransfer.cli import main
from facetransfer.data import get_source, lfw_download
from facetransfer.data.lfw_download import (
    DOWNLOAD_DIR,
    LFW_URLS,
    PROTOCOL_MD5,
    download_lfw,
    fetch,
)
from facetransfer.errors import ConfigError, DataError

PEOPLE = {"Alice_Able": 2, "Bob_Baker": 1, "Carol_Cole": 3}


class LoopbackServer:
    """Serves ``files`` (name -> bytes) on 127.0.0.1 with HTTP Range support.

    ``cut_after[name] = n``: the first GET of ``name`` announces the full length but sends only
    ``n`` bytes and closes the connection (a dropped download). ``ignore_range``: answer every
    GET with the whole file (a server without Range support). ``requests`` records
    ``(path, Range header)``.
    """

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.cut_after: dict[str, int] = {}
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                server.requests.append((name, self.headers.get("Range")))
                data = server.files.get(name)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng and not server.ignore_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = server.cut_after.pop(name, None)
                self.wfile.write(body if cut is None else body[:cut])
                if cut is not None:
                    self.wfile.flush()
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def gets(self, name: str) -> list[str | None]:
        return [rng for path, rng in self.requests if path == name]


def _jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 40 + seed).convert("RGB").save(buffer, "JPEG")
    return buffer.getvalue()


def tiny_lfw(people: dict[str, int] = PEOPLE, listed: dict[str, int] | None = None, top: str = "lfw") -> dict[str, bytes]:
    """The site's files for a three-person LFW: lfw.zip (images under ``top/``) and the protocol files."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"{top}/", b"")
        for k, (name, n) in enumerate(sorted(people.items())):
            for i in range(1, n + 1):
                zf.writestr(f"{top}/{name}/{name}_{i:04d}.jpg", _jpeg(10 * k + i))
        zf.writestr("README.txt", b"tiny")
    names = "".join(f"{name}\t{n}\n" for name, n in sorted((listed or people).items()))
    files = {name: f"{name}: a tiny stand-in\n".encode() for name in PROTOCOL_MD5}
    files["lfw-names.txt"] = names.encode()
    files["pairsDevTrain.txt"] = b"1\nCarol_Cole\t1\t2\nAlice_Able\t1\tBob_Baker\t1\n"
    files["lfw.zip"] = archive.getvalue()
    return files


@pytest.fixture
def site_md5(monkeypatch):
    """Point the published MD5s at the tiny site's files."""

    def use(files: dict[str, bytes]) -> dict[str, str]:
        table = {name: hashlib.md5(files[name]).hexdigest() for name in PROTOCOL_MD5}
        monkeypatch.setattr(lfw_download, "PROTOCOL_MD5", table)
        return table

    return use


def test_the_site_addresses():
    assert LFW_URLS["lfw.zip"] == "https://umass-vis-lfw.github.io/lfw.zip"
    assert LFW_URLS["lfw-deepfunneled.zip"] == "https://umass-vis-lfw.github.io/lfw-deepfunneled.zip"
    assert LFW_URLS["pairsDevTrain.txt"] == "https://umass-vis-lfw.github.io/pairsDevTrain.txt"
    assert PROTOCOL_MD5["pairsDevTrain.txt"] == "4f27cbf15b2da4a85c1907eb4181ad21"
    assert PROTOCOL_MD5["peopleDevTrain.txt"] == "54eaac34beb6d042ed3a7d883e247a21"
    assert PROTOCOL_MD5["lfw-names.txt"] == "a6d0a479bd074669f656265a6e693f6d"


@pytest.mark.shared_data
def test_published_md5s_match_the_shared_copy():
    from .fakes import shared

    root = shared("lfw-devtrain")
    for name in ("pairsDevTrain.txt", "peopleDevTrain.txt", "lfw-names.txt"):
        assert lfw_download.md5_of(root / name) == PROTOCOL_MD5[name]


def test_download_installs_verified_files(tmp_path):
    files = tiny_lfw()
    md5 = {name: hashlib.md5(files[name]).hexdigest() for name in PROTOCOL_MD5}
    with LoopbackServer(files) as site:
        images = download_lfw(tmp_path / "lfw", "original", base_url=site.url, md5=md5)
        assert images == tmp_path / "lfw" / "lfw"
        assert sorted(p.name for p in images.iterdir()) == sorted(PEOPLE)
        with zipfile.ZipFile(io.BytesIO(files["lfw.zip"])) as zf:
            assert (images / "Carol_Cole" / "Carol_Cole_0003.jpg").read_bytes() == zf.read("lfw/Carol_Cole/Carol_Cole_0003.jpg")
        assert (tmp_path / "lfw" / "pairsDevTrain.txt").read_bytes() == files["pairsDevTrain.txt"]
        assert not (tmp_path / "lfw" / DOWNLOAD_DIR).exists()  # archive removed after installing
        assert not list((tmp_path / "lfw").glob(".lfw-extract-*"))
        again = download_lfw(tmp_path / "lfw", "original", base_url=site.url, md5=md5)
        assert again == images and len(site.gets("lfw.zip")) == 1  # already installed: checked, not fetched
    records = get_source("lfw", root=str(tmp_path / "lfw"), variant="original").records()
    assert len(records) == 6


def test_an_interrupted_download_resumes_with_a_range_request(tmp_path, site_md5):
    files = tiny_lfw()
    md5 = site_md5(files)
    with LoopbackServer(files) as site:
        site.cut_after["lfw.zip"] = 1000
        with pytest.raises(DataError, match=r"lfw.zip stopped after 1000 of \d+ bytes; run the same command again to "
                                            r"resume \(1000 bytes kept in .*lfw.zip.part\)"):
            download_lfw(tmp_path / "lfw", "original", base_url=site.url, md5=md5)
        assert not (tmp_path / "lfw" / "lfw").exists()  # nothing half-installed looks complete
        assert (tmp_path / "lfw" / DOWNLOAD_DIR / "lfw.zip.part").stat().st_size == 1000
        images = download_lfw(tmp_path / "lfw", "original", base_url=site.url, md5=md5)
        assert site.gets("lfw.zip") == [None, "bytes=1000-"]
        assert len(list(images.glob("*/*.jpg"))) == 6
        assert all(rng is None for rng in site.gets("pairsDevTrain.txt"))  # fetched once, never again


def test_a_server_without_range_support_restarts_the_file(tmp_path):
    files = tiny_lfw()
    with LoopbackServer(files) as site:
        site.ignore_range = True
        part = tmp_path / "dl" / "lfw.zip.part"
        part.parent.mkdir()
        part.write_bytes(files["lfw.zip"][:777])
        fetch(site.url + "lfw.zip", tmp_path / "dl" / "lfw.zip")
        assert (tmp_path / "dl" / "lfw.zip").read_bytes() == files["lfw.zip"]
        assert site.gets("lfw.zip") == ["bytes=777-"]
        # a complete .part left behind (the rename was interrupted): the server answers 416, the file is kept
        site.ignore_range = False
        part.write_bytes(files["lfw.zip"])
        (tmp_path / "dl" / "lfw.zip").unlink()
        fetch(site.url + "lfw.zip", tmp_path / "dl" / "lfw.zip")
        assert (tmp_path / "dl" / "lfw.zip").read_bytes() == files["lfw.zip"] and not part.exists()


def test_wrong_md5_and_wrong_counts_install_nothing(tmp_path, site_md5):
    files = tiny_lfw(listed={**PEOPLE, "Bob_Baker": 2, "Dan_Dunn": 1})
    md5 = site_md5(files)
    with LoopbackServer(files) as site:
        with pytest.raises(DataError, match=r"pairs.txt has MD5 [0-9a-f]{32}, the published one is 0{32}"):
            download_lfw(tmp_path / "a", "original", base_url=site.url, md5={**md5, "pairs.txt": "0" * 32})
        assert not (tmp_path / "a" / "pairs.txt").exists()
        with pytest.raises(DataError) as err:
            download_lfw(tmp_path / "b", "original", base_url=site.url, md5=md5)
        msg = str(err.value)
        assert "do not match lfw-names.txt (2 problem(s))" in msg
        assert "Bob_Baker: 1 image(s), lfw-names.txt lists 2" in msg and "Dan_Dunn: 0 image(s)" in msg
        assert not (tmp_path / "b" / "lfw").exists() and not list((tmp_path / "b").glob(".lfw-extract-*"))


def test_a_damaged_archive_is_removed_for_the_next_run(tmp_path, site_md5):
    files = tiny_lfw()
    files["lfw-deepfunneled.zip"] = b"PK\x03\x04 this is not a zip archive"
    md5 = site_md5(files)
    with LoopbackServer(files) as site:
        with pytest.raises(DataError, match="is not a valid zip archive.*removed, run the command again"):
            download_lfw(tmp_path / "lfw", "deepfunneled", base_url=site.url, md5=md5)
        assert not (tmp_path / "lfw" / DOWNLOAD_DIR / "lfw-deepfunneled.zip").exists()


def test_data_command(tmp_path, site_md5, capsys):
    files = tiny_lfw(top="lfw-deepfunneled/lfw-deepfunneled")  # nested top folders are found
    files["lfw-deepfunneled.zip"] = files.pop("lfw.zip")
    site_md5(files)
    with LoopbackServer(files) as site:
        root = tmp_path / "data"
        args = ["data", "download", "lfw", "--variant", "deepfunneled", "--root", str(root), "--base-url", site.url,
                "--no-progress"]
        assert main(args) == 0
        assert "LFW deepfunneled: 6 images of 3 people in" in capsys.readouterr().out
        assert (root / "lfw-deepfunneled" / "Alice_Able" / "Alice_Able_0002.jpg").is_file()
        assert main([*args[:3], "--variant", "funneled", *args[5:]]) == 2  # not served: 404
        err = capsys.readouterr().err
        assert err.startswith("facetransfer: error: download of http://127.0.0.1") and "lfw-funneled.zip failed: HTTP 404" in err
    with pytest.raises(ConfigError, match="unknown LFW variant 'lfwa'"):
        download_lfw(tmp_path, "lfwa")


def test_without_network_one_line_says_how_to_finish_offline(tmp_path, site_md5, capsys):
    files = tiny_lfw()
    site_md5(files)
    with socket.socket() as closed:  # a port nobody listens on: the site cannot be reached
        closed.bind(("127.0.0.1", 0))
        offline = f"http://127.0.0.1:{closed.getsockname()[1]}/"
    root = tmp_path / "data" / "lfw"
    assert main(["data", "download", "lfw", "--variant", "original", "--root", str(root), "--base_url", offline]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("facetransfer: error: cannot reach 127.0.0.1:")
    assert f"copy {', '.join(PROTOCOL_MD5)}, lfw.zip from {offline} into {root / DOWNLOAD_DIR}/" in err[0]
    assert not (tmp_path / "data").exists()  # no empty folders left behind
    (root / DOWNLOAD_DIR).mkdir(parents=True)  # the hand-over: the files copied where the message says
    for name, data in files.items():
        (root / DOWNLOAD_DIR / name).write_bytes(data)
    assert download_lfw(root, "original", base_url=offline) == root / "lfw"  # checked and installed, still offline
    assert (root / "lfw" / "Carol_Cole" / "Carol_Cole_0003.jpg").is_file() and (root / "pairsDevTrain.txt").is_file()
