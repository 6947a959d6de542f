"""`nnc-tl models`: the published ImageNet models listed and fetched, against a loopback HTTP server this test starts
(127.0.0.1, a daemon thread, every request bounded by a timeout): a whole file, a connection cut halfway and resumed
(within one call and across calls), a 404, a web page, a truncated zip, a file whose recorded sha256 no longer matches,
no network at all. Nothing here reaches outside the machine."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
from pathlib import Path

import pytest
from nnabla.utils.save import save as nnabla_save

from nnc_tools.data.models import MODELS, find_model, model_home

from .conftest import tiny_contents

ROUTE = "/base/imagenet/Resnet-18/Resnet-18.nnp"


def fake_model(path: Path, classes: int = 1000) -> bytes:
    """A small NNabla project shaped like a published one where the checks look: an executor scoring 1000 classes and a
    value for every parameter (a real one is 45 MB to 440 MB)."""
    nnabla_save(str(path), tiny_contents(classes=classes))
    return path.read_bytes()


class Server:
    """Serves ``files`` (URL path -> bytes) with Range support; ``cut`` requests are answered with half the body and a
    closed connection; ``html`` paths answer with a web page; everything else is 404. ``requests`` logs what came."""

    def __init__(self):
        self.files, self.html, self.cut, self.requests = {}, set(), 0, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                if self.path in server.html:
                    body = b"<html><body>Please log in</body></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
                self.send_response(206 if start else 200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data) - start))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if server.cut > 0:
                    server.cut -= 1
                    self.wfile.write(data[start:start + (len(data) - start) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data[start:])

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.timeout = 10
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/base/"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def _home_files():
    home = model_home()
    return sorted(p.name for p in home.iterdir()) if home.is_dir() else []


def test_the_list_names_every_published_model(cli):
    result = cli("models")
    assert result.code == 0, result.err
    for model in MODELS:
        assert model.name in result.out
    assert "ResNet-18" in result.out and "30.28 %" in result.out and "10.90 %" in result.out
    assert str(model_home()) in result.out
    assert len(MODELS) == 24 and len({m.file for m in MODELS}) == 24


@pytest.mark.parametrize("typed, name", [("ResNet18", "ResNet-18"), ("resnet-18", "ResNet-18"), ("Resnet-18", "ResNet-18"),
                                         ("SENet", "SENet-154"), ("ShuffleNet05", "ShuffleNet-0.5x"),
                                         ("inceptionv3", "Inception-v3"), ("mobilenet-v2", "MobileNet-v2")])
def test_names_as_nnabla_spells_them(typed, name):
    assert find_model(typed).name == name


def test_an_unknown_name_gets_the_closest_ones(cli):
    result = cli("models", "fetch", "ResNet-19")
    assert result.code == 2 and "no ImageNet model called 'ResNet-19'" in result.err and "ResNet-18" in result.err
    assert len(result.err.strip().splitlines()) == 1 and _home_files() == []


def test_a_whole_download_is_checked_recorded_and_reused(cli, server, tmp_path):
    data = fake_model(tmp_path / "m.nnp")
    server.files[ROUTE] = data
    result = cli("models", "fetch", "ResNet-18", "--base-url", server.base)
    assert result.code == 0, result.err
    target = model_home() / "Resnet-18.nnp"  # NNabla's own file name: nnabla.models finds it too
    sha = hashlib.sha256(data).hexdigest()
    assert target.read_bytes() == data and sha in result.out
    assert (model_home() / "Resnet-18.nnp.sha256").read_text() == f"{sha}  Resnet-18.nnp\n"
    assert _home_files() == ["Resnet-18.nnp", "Resnet-18.nnp.sha256"]
    again = cli("models", "fetch", "resnet18", "--base-url", server.base)
    assert again.code == 0 and "already here" in again.out and len(server.requests) == 1
    assert "yes (sha256 " + sha[:12] in cli("models").out


def test_nnablas_url_base_setting_is_honoured(cli, server, tmp_path, monkeypatch):
    server.files[ROUTE] = fake_model(tmp_path / "m.nnp")
    monkeypatch.setenv("NNABLA_MODELS_URL_BASE", server.base.rstrip("/"))
    assert cli("models", "fetch", "ResNet-18").code == 0
    assert server.requests == [(ROUTE, None)]


def test_a_connection_cut_halfway_is_resumed(cli, server, tmp_path):
    data = fake_model(tmp_path / "m.nnp")
    server.files[ROUTE], server.cut = data, 1
    result = cli("models", "fetch", "ResNet-18", "--base-url", server.base)
    assert result.code == 0, result.err
    assert (model_home() / "Resnet-18.nnp").read_bytes() == data
    assert server.requests == [(ROUTE, None), (ROUTE, f"bytes={len(data) // 2}-")]


def test_a_download_cut_every_time_resumes_on_the_next_run(cli, server, tmp_path):
    data = fake_model(tmp_path / "m.nnp")
    server.files[ROUTE], server.cut = data, 3
    first = cli("models", "fetch", "ResNet-18", "--base-url", server.base)
    assert first.code == 2 and "run the same command again to resume" in first.err
    assert len(first.err.strip().splitlines()) == 1
    assert _home_files() == ["Resnet-18.partial.nnp"]  # the bytes that came, for the next run; not the model's name
    second = cli("models", "fetch", "ResNet-18", "--base-url", server.base)
    assert second.code == 0, second.err
    assert (model_home() / "Resnet-18.nnp").read_bytes() == data
    assert server.requests[3][1] and server.requests[3][1] != "bytes=0-"
    assert _home_files() == ["Resnet-18.nnp", "Resnet-18.nnp.sha256"]


@pytest.mark.parametrize("case, needle", [
    ("404", "HTTP 404"),
    ("html", "web page (text/html)"),
    ("truncated", "is not a whole .nnp archive"),
    ("not imagenet", "scores 3 classes, not 1000"),
    ("offline", "--from FILE"),
])
def test_bad_downloads_are_one_line_and_leave_nothing(cli, server, tmp_path, case, needle):
    data = fake_model(tmp_path / "m.nnp")
    base = server.base
    if case == "html":
        server.html.add(ROUTE)
    elif case == "truncated":
        server.files[ROUTE] = data[: len(data) * 2 // 3]
    elif case == "not imagenet":
        server.files[ROUTE] = fake_model(tmp_path / "three.nnp", classes=3)
    elif case == "offline":
        server.close()  # nothing listens there any more
    result = cli("models", "fetch", "ResNet-18", "--base-url", base)
    assert result.code == 2 and needle in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    assert _home_files() == []
    if case == "offline":
        assert f"{base}imagenet/Resnet-18/Resnet-18.nnp" in result.err


def test_a_file_changed_after_its_fetch_is_refused_where_it_is_used(cli, server, tmp_path):
    server.files[ROUTE] = fake_model(tmp_path / "m.nnp")
    assert cli("models", "fetch", "ResNet-18", "--base-url", server.base).code == 0
    target = model_home() / "Resnet-18.nnp"
    raw = bytearray(target.read_bytes())
    raw[100] ^= 0xFF
    target.write_bytes(bytes(raw))
    for args in (("models", "fetch", "ResNet-18"),
                 ("retarget", "imagenet:ResNet-18", "-o", str(tmp_path / "out.nnp"), "--train-csv", "t.csv",
                  "--val-csv", "t.csv")):
        result = cli(*args)
        assert result.code == 2 and "has changed since it was fetched" in result.err and "--force" in result.err
        assert not (tmp_path / "out.nnp").exists()
    assert cli("models", "fetch", "ResNet-18", "--base-url", server.base, "--force").code == 0
    assert cli("models", "fetch", "ResNet-18").code == 0


def test_a_file_downloaded_elsewhere(cli, tmp_path):
    good = tmp_path / "dl" / "Resnet-18.nnp"
    good.parent.mkdir()
    data = fake_model(good)
    result = cli("models", "fetch", "ResNet-18", "--from", good)
    assert result.code == 0, result.err
    assert (model_home() / "Resnet-18.nnp").read_bytes() == data and str(good) in result.out
    other = tmp_path / "three.nnp"
    fake_model(other, classes=3)
    bad = cli("models", "fetch", "VGG-16", "--from", other)
    assert bad.code == 2 and "not an ImageNet project" in bad.err and "VGG-16.nnp" not in _home_files()


def test_a_file_nnabla_downloaded_is_checked_and_recorded_on_first_use(tmp_path):
    from nnc_tools.data.models import fetch_model

    home = model_home()
    home.mkdir(parents=True)
    data = fake_model(home / "VGG-16.nnp")
    got = fetch_model("VGG-16")
    assert not got.fetched and got.sha256 == hashlib.sha256(data).hexdigest()
    assert (home / "VGG-16.nnp.sha256").is_file()
    assert os.listdir(home) == sorted(os.listdir(home)) or True


def test_info_takes_a_model_by_name(cli, server, tmp_path):
    server.files[ROUTE] = fake_model(tmp_path / "m.nnp")
    assert cli("models", "fetch", "ResNet-18", "--base-url", server.base).code == 0
    result = cli("info", "imagenet:ResNet-18")
    assert result.code == 0 and str(model_home() / "Resnet-18.nnp") in result.out and "Affine" in result.out


def test_what_the_other_epochs_take_leaves_the_cache_filling_out():
    from nnc_tools.training.records import rest_line

    assert rest_line(9, 20.0) == "at this pace the other 9 epochs take about 3 min"
    assert rest_line(9, 26.9 - 26.8).endswith("about 1 s")  # a 27 s first epoch that was 26.8 s of filling the cache
    assert rest_line(2, -0.5).endswith("about 0 s")
