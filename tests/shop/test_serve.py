"""The web page of stage serve: in a real browser, against the API's answer; and its clear refusals."""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import load
from pipeline.config.tuned import Tuned, load_tuned
from pipeline.shop.page import Limits, PhotoDesk

from browser import MISSING, chromium, requests, upload
from stage_runs import REPO

uvicorn = pytest.importorskip("uvicorn", reason="stage serve's extra is not installed: pip install -e '.[serve]'")

MAX_BYTES = 300_000


@pytest.fixture(scope="module")
def desk(project, tmp_path_factory) -> PhotoDesk:
    """The project's model, its tuned file choosing attributes from a low probability (every group, every
    garment): the model has trained for two steps, and the page must show attributes for the test to see them."""
    tuned = load_tuned(project / "tuning" / "maskrcnn" / "postprocess.yaml")
    path = tmp_path_factory.mktemp("tuned") / "postprocess.yaml"
    path.write_text(Tuned("maskrcnn", tuned.postprocess.model_copy(update={
        "attribute_thresh": 0.05, "group_thresh": {}, "attribute_policy": "full", "category_policy": {}})).text())
    return PhotoDesk(load(project / "models" / "maskrcnn", tuned=path),
                     Limits(MAX_BYTES, max_pixels=2_000_000, max_waiting=1), k=3)


def _until(done, what: str, seconds: float = 60) -> None:
    """Wait for ``done()``; a failure naming ``what`` after ``seconds``, never a hang."""
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, f"waited {seconds} s for {what}"
        time.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def page(desk):
    """The page served on localhost in this process: its address."""
    from pipeline.shop.server import make_app

    server = uvicorn.Server(uvicorn.Config(make_app(desk), host="127.0.0.1", port=_free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    _until(lambda: server.started, "the server to start")
    yield f"http://127.0.0.1:{server.config.port}/"
    server.should_exit = True
    thread.join(10)


def _request(url: str, method: str, path: str, body=None, headers: dict | None = None, **options) -> tuple[int, dict]:
    """Status and JSON of one request to the server of ``url``, its connection closed."""
    host, port = url.removeprefix("http://").strip("/").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=300)
    try:
        connection.request(method, path, body=body, headers=headers or {}, **options)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def _post(url: str, body: bytes, **headers: str) -> tuple[int, dict]:
    return _request(url, "POST", "/segment", body, {"X-Photo-Name": "upload.jpg", **headers})


def _listening(port: int) -> set[str]:
    """The IPv4 addresses on which a socket listens on ``port`` (Linux's /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, at = local.split(":")
        if int(at, 16) == port and state == "0A":  # LISTEN
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def _png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.skipif(MISSING is not None, reason=str(MISSING))
def test_the_page_shows_the_apis_items_and_similar_items_and_loads_nothing_from_elsewhere(page, desk, small_dataset,
                                                                                          tmp_path):
    from selenium.webdriver.common.by import By

    results = {p: desk.model(p) for p in sorted((small_dataset / "test").iterdir())}
    photo = next((p for p, r in results.items() if any(item.attributes for item in r.items)), None)
    assert photo is not None, "a test photo has an item with attributes: the page has them to show"
    expected = results[photo]
    browser = chromium()
    try:
        upload(browser, page, photo)
        rows = browser.find_elements(By.CSS_SELECTOR, "#items li")
        shown = [(row.find_element(By.CLASS_NAME, "category").text, row.find_element(By.CLASS_NAME, "score").text)
                 for row in rows]
        assert shown == [(item.category, f"{item.score:.2f}") for item in expected.items]
        attributes = [row.find_elements(By.CLASS_NAME, "attributes") for row in rows]
        assert [found[0].text if found else "" for found in attributes] == [
            ", ".join(item.attributes) for item in expected.items]
        overlay = browser.find_element(By.ID, "overlay")
        assert overlay.is_displayed() and browser.execute_script(
            "return arguments[0].naturalWidth", overlay) == expected.plot().width
        tiles = browser.find_elements(By.CSS_SELECTOR, ".matches figure img")
        assert tiles and all(browser.execute_script("return arguments[0].naturalWidth > 0", t) for t in tiles)
        assert len(browser.find_elements(By.CSS_SELECTOR, "#similar h3")) == len(expected.items)
        assert re.fullmatch(rf"{re.escape(photo.name)}: {len(rows)} item\(s\) in \d+\.\d s",
                            browser.find_element(By.ID, "status").text)
        browser.save_screenshot(str(tmp_path / "page.png"))
        not_a_photo = tmp_path / "notes.jpg"
        not_a_photo.write_text("not a photo")
        upload(browser, None, not_a_photo)  # on the same page, under the first photo's result
        assert browser.find_element(By.ID, "status").text.startswith("notes.jpg: not an image (JPEG, ")
        assert not browser.find_element(By.ID, "result").is_displayed(), "no earlier photo's items under the error"
        visited = requests(browser)
        assert visited and all(url.startswith((page, "data:")) for url in visited), visited
    finally:
        browser.quit()


def test_the_page_itself_names_no_other_server():
    html = (REPO / "pipeline" / "shop" / "page.html").read_text()
    assert not re.search(r"https?:|//[a-z]|@import|<link", html), "no CDN, font or script from elsewhere"


@pytest.mark.parametrize("body,status,message", [
    (b"", 400, "upload.jpg: the file is empty"),
    (b"not an image", 400, "upload.jpg: not an image (JPEG, PNG, WEBP, BMP, GIF, TIFF)"),
    (b"\xff\xd8\xff\xe0broken", 400, "upload.jpg: not an image"),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", 400, "upload.jpg: not an image (JPEG,"),
    (b"x" * (MAX_BYTES + 1), 413, "upload.jpg: 0.3 MB; the page takes photos of up to 0.3 MB"),
    (_png((2000, 1001)), 413, "upload.jpg: 2000 x 1001 pixels; the page takes photos of up to 2 megapixels"),
])
def test_what_the_page_cannot_take_gets_a_message(page, body, status, message):
    answered, answer = _post(page, body)
    assert answered == status and answer["error"].startswith(message), answer


def test_a_sender_that_does_not_declare_its_length_is_cut_off_at_the_limit(page):
    def chunks():
        for _ in range(MAX_BYTES // 1000 + 2):
            yield b"x" * 1000

    status, answer = _request(page, "POST", "/segment", chunks(), encode_chunked=True)
    assert status == 413 and answer["error"] == "photo: too large; the page takes photos of up to 0.3 MB"


def test_one_photo_runs_and_max_waiting_wait_the_next_is_told_at_once_and_the_others_are_answered(page, desk,
                                                                                                 small_dataset):
    photo = sorted((small_dataset / "test").iterdir())[0].read_bytes()
    answers: list = []
    with desk._model_lock:  # the model is still on the first photo
        senders = [threading.Thread(target=lambda: answers.append(_post(page, photo))) for _ in range(2)]
        for sender in senders:
            sender.start()
        _until(lambda: desk._in_flight == 2, "one photo in the model and one waiting (max_waiting 1)")
        started = time.perf_counter()
        status, answer = _post(page, photo)
        assert status == 503 and answer["error"].startswith("busy: 2 photos are being segmented or wait")
        assert time.perf_counter() - started < 10, "refused at once, not after the wait"
    for sender in senders:
        sender.join(300)
    assert [status for status, _ in answers] == [200, 200] and all(a["items"] for _, a in answers)
    assert desk._in_flight == 0


def test_another_site_or_host_name_cannot_use_the_page(page, small_dataset):
    photo = sorted((small_dataset / "test").iterdir())[0].read_bytes()
    status, answer = _post(page, photo, Origin="https://example.com")
    assert status == 403 and answer["error"] == "upload.jpg: posted from another site (https://example.com)"
    host, port = page.removeprefix("http://").strip("/").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request("GET", "/about", headers={"Host": f"attacker.example:{port}"})
        assert connection.getresponse().status == 400, "a rebound host name is refused"
    finally:
        connection.close()
    assert _post(page, photo, Origin=page.rstrip("/"))[0] == 200, "the page's own origin is welcome"


def test_an_unexpected_failure_is_a_message_and_the_server_goes_on(page, desk, small_dataset, monkeypatch):
    photo = sorted((small_dataset / "test").iterdir())[0].read_bytes()

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(desk, "_segmented", broken)
    status, answer = _post(page, photo)
    assert status == 500
    assert answer["error"] == "upload.jpg: the server failed (RuntimeError: CUDA out of memory); its log says more"
    monkeypatch.undo()
    assert _post(page, photo)[0] == 200 and desk._in_flight == 0


def test_stage_serve_opens_the_page_offline_on_localhost(project, tmp_path):
    port = _free_port()
    command = [sys.executable, str(REPO / "tests" / "offline_stage.py"), "-m", "stages.serve",
               "--params", str(project / "params.yaml"), "--run-dir", str(project / "models" / "maskrcnn"),
               "--index", str(project / "index"), "--tuned", str(project / "tuning" / "maskrcnn" / "postprocess.yaml"),
               "--port", str(port)]
    said, errors = tmp_path / "stdout", tmp_path / "stderr"
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as from a terminal's pipe
    with said.open("w") as out, errors.open("w") as err, subprocess.Popen(
            command, cwd=REPO, stdout=out, stderr=err, text=True,
            env={**environment, "PYTHONPATH": str(REPO)}) as process:
        try:
            _until(lambda: said.read_text().count("\n") >= 3 or process.poll() is not None, "the address", 120)
            assert said.read_text().splitlines() == [
                "model: maskrcnn, " + str(project / "models" / "maskrcnn" / "last.pt"),
                f"similar items: from {project / 'index'}", f"open http://localhost:{port}/ (Ctrl-C stops)"], \
                errors.read_text()
            about = {}

            def answered() -> bool:
                try:
                    about.update(_request(f"http://127.0.0.1:{port}/", "GET", "/about")[1])
                except ConnectionRefusedError:
                    return False
                return True

            _until(answered, "the page to answer")
            assert about["family"] == "maskrcnn" and about["similar"] and about["max_mb"] == 20
            if Path("/proc/net/tcp").is_file():
                assert _listening(port) == {"127.0.0.1"}, "this machine only"
        finally:
            process.terminate()
            process.wait(30)
    assert process.returncode in (0, -15) and "network access refused" not in errors.read_text(), errors.read_text()


def test_a_port_in_use_is_said_in_one_line_before_the_model_loads(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "stages.serve", "--run-dir", str(tmp_path / "no-run"),
                               "--port", str(port)], cwd=REPO, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port} (Address already in use)"), done.stderr
