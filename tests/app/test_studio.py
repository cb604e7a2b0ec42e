"""`dfc-vae studio`: the web API a user's page talks to, and the page in a real (headless) browser."""

from __future__ import annotations

import importlib
import io
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

IN_CI = os.environ.get("CI") == "true"  # CI installs the extras and Chromium: there a missing one fails


def need(module: str):
    return importlib.import_module(module) if IN_CI else pytest.importorskip(module)


need("starlette")
need("httpx2")  # Starlette's TestClient

from starlette.testclient import TestClient  # noqa: E402

from dfc_vae.app import studio as studio_module  # noqa: E402
from dfc_vae.editing.attributes import compute_attribute_vectors, load_attribute_vectors  # noqa: E402
from dfc_vae.cli import main  # noqa: E402
from dfc_vae.util.images import to_tensor  # noqa: E402
from dfc_vae.editing.edit import read_photo  # noqa: E402
from dfc_vae.util.images import to_uint8  # noqa: E402
from dfc_vae.editing.latent import add_attributes  # noqa: E402
from dfc_vae.runs.run import load_run  # noqa: E402
from dfc_vae.app.studio import Studio, create_app  # noqa: E402

ARTIFACTS = Path(__file__).parent / "artifacts"
TOKEN = "test-token-0123456789abcdef"
HOME = "http://127.0.0.1:7860"
CHROMIUM = os.environ.get("DFC_VAE_CHROMIUM", "/usr/bin/chromium")


def make_edits_visible(run):
    """The tiny run (2 steps) decodes every face to nearly black; scale its last layer so that its
    faces are mid-grey and differences between latents show in the pixels."""
    last = [m for m in run.model.decoder.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.mul_(40)
        last.bias.add_(0.5)
    return run


@pytest.fixture(scope="module")
def setup(tiny_trained_run, synth_root, cache_dir):
    run = make_edits_visible(load_run(tiny_trained_run))
    vectors = compute_attribute_vectors(run, synth_root, "train", cache_dir, progress=False)
    # a 2-step encoder barely separates the attributes; lengthen the directions so edits show
    vectors.vectors = torch.nn.functional.normalize(vectors.vectors, dim=1) * 3
    path = vectors.save(tiny_trained_run / "studio_attrs.safetensors")
    photo = sorted((synth_root / "img_align_celeba").glob("*.jpg"))[0]
    return run, load_attribute_vectors(path, run.config.latent_dim), photo


@pytest.fixture()
def client(setup):
    run, vectors, _ = setup
    studio = Studio(run, vectors)
    with TestClient(create_app(studio, TOKEN), base_url=HOME, raise_server_exceptions=False) as c:
        assert c.get(f"/?token={TOKEN}").status_code == 200  # the printed URL: sets the cookie, then the page
        c.studio = studio
        yield c
    assert not studio.workdir.exists()  # the temporary folder goes when the server stops


def png(response) -> np.ndarray:
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))


def from_data_url(url: str) -> np.ndarray:
    import base64

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


@torch.no_grad()
def expected_edit(run, vectors, face: np.ndarray, settings: dict) -> np.ndarray:
    """What the Python API gives for this face and edit: decode(mu(x) + sum alpha v)."""
    mu = run.model.encode(to_tensor(np.array(face[None])))[0]
    v = torch.stack([vectors.vector(n) for n in settings])
    return to_uint8(run.model.decode(add_attributes(mu, v, list(settings.values()))))[0]


def test_page_and_info(client, setup):
    assert "dfc_vae studio" in client.get("/").text
    info = client.get("/api/info").json()
    # every attribute with a vector, once (scored ones first); those whose labels are all one value are hidden
    assert sorted(info["attributes"]) == sorted(setup[1].usable) and info["image_size"] == 32 and info["alpha_limit"] == 2


def test_upload_encode_once_then_edit_as_the_python_api_does(client, setup):
    run, vectors, photo = setup
    face = client.post("/api/faces?aligned=1", content=photo.read_bytes()).json()
    shown_input = from_data_url(face["input"])
    assert (shown_input == read_photo(photo, 32)).all()  # the same preprocessing as `dfc-vae edit`
    settings = {"Smiling": 1.5, "Male": -0.5}
    edit = png(client.post("/api/render", json={"face": face["id"], "settings": settings}))
    assert np.abs(edit.astype(int) - expected_edit(run, vectors, shown_input, settings)).max() <= 1
    plain = png(client.post("/api/render", json={"face": face["id"], "settings": {}}))
    assert (plain == from_data_url(face["reconstruction"])).all()
    assert np.abs(plain.astype(int) - edit).mean() > 0.5
    strip = client.post("/api/download", json={"face": face["id"], "settings": settings})
    img = Image.open(io.BytesIO(strip.content))
    assert img.width >= 3 * 192 and "Smiling +1.5" in img.text["settings"]
    assert "attachment" in strip.headers["content-disposition"]
    assert client.post("/api/download", json={"face": face["id"], "settings": {}, "photo": True}).status_code == 400


def test_a_photo_is_aligned_on_upload_and_the_edit_pasted_back_on_download(client):
    from dfc_vae.editing import align

    if not align.available() and not IN_CI:
        pytest.skip('needs pip install "dfc_vae[align]"')
    photo = io.BytesIO()
    Image.fromarray(need("skimage.data").astronaut()).save(photo, format="JPEG", quality=95)
    face = client.post("/api/faces", content=photo.getvalue()).json()
    assert face["has_photo"] and "aligned" in face["note"]
    body = {"face": face["id"], "settings": {"Smiling": 2}, "photo": True}
    result = np.asarray(Image.open(io.BytesIO(client.post("/api/download", json=body).content)))
    original = np.asarray(Image.open(photo).convert("RGB")).astype(int)
    assert result.shape == original.shape
    changed = np.abs(result.astype(int) - original).max(2) > 0
    ys, xs = np.nonzero(changed)
    assert changed.mean() < 0.25 and 120 < xs.mean() < 320 and 40 < ys.mean() < 220  # her face, not the rest


def test_random_faces_and_blending(client, setup):
    run, _, _ = setup
    cold = client.post("/api/random", json={"temperature": 0}).json()
    warm = client.post("/api/random", json={"temperature": 1.5, "seed": 4}).json()
    with torch.no_grad():
        mean_face = to_uint8(run.model.decode(torch.zeros(1, run.config.latent_dim)))[0]
    assert (from_data_url(cold["input"]) == mean_face).all()  # temperature 0: the prior's mean
    start = png(client.post("/api/render", json={"face": cold["id"], "other": warm["id"], "mix": 0}))
    end = png(client.post("/api/render", json={"face": cold["id"], "other": warm["id"], "mix": 1}))
    assert (start == mean_face).all() and (end == from_data_url(warm["input"])).all()
    assert client.post("/api/random", json={"temperature": 9}).status_code == 400


@pytest.mark.parametrize("body, message", [
    (b"", "empty"),
    (b"this is not an image", "not an image"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 50, "not an image|could not be read"),
])
def test_bad_uploads_get_a_message_and_the_server_keeps_serving(client, body, message):
    r = client.post("/api/faces", content=body)
    assert r.status_code == 400
    import re
    assert re.search(message, r.json()["error"])
    assert client.get("/api/info").status_code == 200


def test_limits_on_bytes_and_pixels(client, monkeypatch, tmp_path):
    monkeypatch.setattr(studio_module, "MAX_UPLOAD_BYTES", 1000)
    r = client.post("/api/faces", content=b"x" * 5000)
    assert r.status_code == 413 and "larger than" in r.json()["error"]
    monkeypatch.setattr(studio_module, "MAX_UPLOAD_BYTES", 20 * 2**20)
    big = io.BytesIO()
    Image.new("RGB", (6000, 6000)).save(big, format="PNG")
    r = client.post("/api/faces", content=big.getvalue())
    assert r.status_code == 400 and "megapixels" in r.json()["error"]
    square = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 150, 120)).save(square, format="PNG")
    r = client.post("/api/faces?aligned=1", content=square.getvalue())
    assert r.status_code == 400 and "178x218" in r.json()["error"] and "the photo is 64x64" in r.json()["error"]


def test_bad_edit_requests_are_messages(client):
    face = client.post("/api/random", json={"temperature": 1}).json()["id"]
    for body, message in [({"face": "nope"}, "unknown"), ({"face": face, "settings": {"Smilling": 1}}, "unknown attribute"),
                          ({"face": face, "settings": {"Smiling": 5}}, "between -2 and 2"),
                          ({"face": face, "settings": {"Smiling": "x"}}, "number"),
                          ({"face": face, "other": face, "mix": 2}, "between 0 and 1")]:
        r = client.post("/api/render", json=body)
        assert r.status_code == 400 and message in r.json()["error"], (body, r.text)
    assert client.post("/api/render", content=b"{not json", headers={"Content-Type": "application/json"}).status_code == 400


def test_an_unexpected_failure_is_a_message_not_a_crash(client, monkeypatch, caplog):
    face = client.post("/api/random", json={"temperature": 1}).json()["id"]
    monkeypatch.setattr(client.studio, "decode", lambda z: (_ for _ in ()).throw(RuntimeError("boom /secret/path")))
    r = client.post("/api/render", json={"face": face})
    assert r.status_code == 500 and "could not do this" in r.json()["error"]
    assert "boom" not in r.text and "/secret/path" not in r.text  # the detail is the server's log's, not the page's
    assert "boom /secret/path" in caplog.text and "/api/render" in caplog.text
    monkeypatch.undo()
    assert client.post("/api/render", json={"face": face}).status_code == 200


def test_nothing_is_written_outside_the_temporary_folder(client, setup, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    face = client.post("/api/faces?aligned=1", content=setup[2].read_bytes()).json()["id"]
    client.post("/api/render", json={"face": face, "settings": {"Smiling": 1}})
    client.post("/api/download", json={"face": face})
    assert list(tmp_path.iterdir()) == [] and list(client.studio.workdir.iterdir()) == []


def test_studio_command_refuses_bad_arguments_in_one_line(setup, capsys):
    run, _, _ = setup
    assert main(["studio", "--run", str(run.path), "--port", "99999"]) == 2
    assert "--port" in capsys.readouterr().err
    assert main(["studio", "--run", str(run.path), "--attributes", str(run.path / "missing.safetensors")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- a real browser


def wait_until(page, expression: str, timeout: float = 30.0) -> None:
    """Playwright's wait_for_function evaluates its string with eval(), which the studio's
    Content-Security-Policy forbids in the page; page.evaluate goes through the debugger instead."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def live_server(setup):
    uvicorn = need("uvicorn")
    run, vectors, _ = setup
    studio = Studio(run, vectors)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(studio, TOKEN), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}", studio
    server.should_exit = True
    thread.join(30)


@pytest.mark.skipif(not Path(CHROMIUM).exists() and not IN_CI, reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")
def test_in_a_real_browser_upload_move_a_slider_and_see_the_edit(live_server, setup, tmp_path):
    sync_api = need("playwright.sync_api")
    url, studio = live_server
    run, vectors, photo = setup
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(url)  # without the token: the page says to open the printed URL
        wait_until(page, "document.querySelector('#message').className === 'error'")
        assert "open the URL" in page.inner_text("#message")
        page.goto(f"{url}/?token={TOKEN}")  # the URL `dfc-vae studio` prints
        assert page.url == f"{url}/"  # the token is out of the address bar, kept in an HttpOnly cookie
        page.wait_for_selector("#attr-Smiling")
        page.check("#aligned")
        page.set_input_files("#photo", str(photo))
        wait_until(page, "document.querySelector('#edit').dataset.request !== undefined")
        assert "taken as an aligned crop" in page.inner_text("#message")

        def shown(selector: str) -> np.ndarray:
            data = page.evaluate("""async (selector) => {
                const response = await fetch(document.querySelector(selector).src);
                return Array.from(new Uint8Array(await response.arrayBuffer())); }""", selector)
            return np.asarray(Image.open(io.BytesIO(bytes(data))).convert("RGB"))

        before = shown("#edit")
        page.fill("#attr-Smiling", "2")  # sets the range input and fires its input event
        wait_until(page, "JSON.parse(document.querySelector('#edit').dataset.request).settings.Smiling === 2")
        after = shown("#edit")
        face_input = shown("#input")
        assert (face_input == read_photo(photo, 32)).all()
        assert np.abs(before.astype(int) - after).mean() > 0.5  # the picture changed ...
        expected = expected_edit(run, vectors, face_input, {"Smiling": 2.0})
        assert np.abs(after.astype(int) - expected).max() <= 1  # ... into what the Python API computes
        shot = ARTIFACTS / "studio.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot: {shot}")
        page.fill("#temperature", "0.5")
        page.click("#random")
        wait_until(page, "document.querySelector('#face').options.length === 2")
        page.set_input_files("#photo", {"name": "junk.jpg", "mimeType": "image/jpeg", "buffer": b"not an image"})
        wait_until(page, "document.querySelector('#message').className === 'error'")
        assert "not an image" in page.inner_text("#message")
        bad = ARTIFACTS / "studio_bad_upload.png"
        page.screenshot(path=str(bad), full_page=True)
        print(f"screenshot: {bad}")
        browser.close()
    assert shot.stat().st_size > 0 and bad.stat().st_size > 0


def test_random_faces_from_the_fitted_prior_and_drawn_to_order(setup, tiny_trained_run, synth_root, cache_dir, client):
    from dfc_vae.runs.prior import fit_prior

    assert client.get("/api/info").json()["priors"] == {"normal": "N(0, I)"}  # the tiny run keeps no prior
    refused = client.post("/api/random", json={"prior": "mixture"})
    assert refused.status_code == 400 and "dfc-vae fit-prior" in refused.json()["error"]
    run, vectors, _ = setup
    fitted = load_run(tiny_trained_run)
    fitted.prior = fit_prior(fitted, synth_root, cache_dir)  # held in memory: the shared run is not written
    with TestClient(create_app(Studio(fitted, vectors), TOKEN), base_url=HOME, raise_server_exceptions=False) as c:
        assert c.get(f"/?token={TOKEN}").status_code == 200
        info = c.get("/api/info").json()
        assert set(info["priors"]) == {"normal", "gaussian", "mixture"} and "Smiling" in info["where_attributes"]
        face = c.post("/api/random", json={"prior": "mixture", "seed": 1}).json()
        assert "fitted mixture" in face["source"]
        again = c.post("/api/random", json={"prior": "mixture", "seed": 1}).json()
        assert again["input"] == face["input"]  # a seed draws the same face
        ordered = c.post("/api/random", json={"where": ["Smiling=1"], "seed": 2}).json()
        assert "training faces with Smiling=1" in ordered["source"]
        for body, message in (({"where": ["Smiley=1"]}, "unknown attribute 'Smiley'"),
                              ({"where": ["Smiling=3"]}, "must be 1"), ({"where": "Smiling=1"}, "must be a list"),
                              ({"prior": "uniform"}, "unknown prior")):
            answer = c.post("/api/random", json=body)
            assert answer.status_code == 400 and message in answer.json()["error"], body
