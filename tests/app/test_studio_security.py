"""The studio against what other web pages, programs and uploads can send it: each attack fails the
way a user would want (an untrained tiny model: the guard does not depend on the weights)."""

from __future__ import annotations

import asyncio
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

IN_CI = os.environ.get("CI") == "true"
if not IN_CI:
    pytest.importorskip("starlette")
    pytest.importorskip("httpx2")

from starlette.testclient import TestClient  # noqa: E402

from dfc_vae.app import studio as studio_module  # noqa: E402
from dfc_vae.app import studio_guard  # noqa: E402
from dfc_vae.app.studio import Studio, create_app  # noqa: E402
from dfc_vae.cli import main  # noqa: E402
from dfc_vae.runs.config import TrainConfig  # noqa: E402
from tiny import untrained_loaded_run  # noqa: E402

TOKEN = "a-secret-token-0123456789"
HOME = "http://127.0.0.1:7860"


@pytest.fixture()
def studio(tmp_path):
    config = TrainConfig(image_size=32, latent_dim=8, base_channels=4, crop="official")
    return Studio(untrained_loaded_run(config, tmp_path))


def client_for(studio, token=TOKEN, host="127.0.0.1", base_url=HOME) -> TestClient:
    return TestClient(create_app(studio, token, host), base_url=base_url, raise_server_exceptions=False)


@pytest.fixture()
def client(studio):
    with client_for(studio) as c:
        assert c.get(f"/?token={TOKEN}").status_code == 200
        c.studio = studio
        yield c


def one_json_line(response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json" and "\n" not in response.text
    return response.json()["error"]


def jpeg(width: int, height: int, colour=(180, 140, 120)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def test_the_printed_url_sets_a_strict_httponly_cookie_and_leaves_the_address_bar(studio):
    with client_for(studio) as c:
        assert c.get("/api/info").status_code == 401
        r = c.get(f"/?token={TOKEN}", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/"
        cookie = r.headers["set-cookie"].lower()
        assert TOKEN.lower() in cookie and "httponly" in cookie and "samesite=strict" in cookie
        assert c.get("/api/info").status_code == 200


def test_without_the_token_the_api_says_to_open_the_printed_url(studio):
    with client_for(studio) as c:
        assert "dfc_vae studio" in c.get("/").text  # the page holds nothing secret
        assert "open the URL" in one_json_line(c.get("/api/info"), 401)
        assert "open the URL" in one_json_line(c.post("/api/random", json={}), 401)
        assert "not this studio's" in one_json_line(c.get("/?token=guessed-0123456789"), 403)
        assert "wrong" in one_json_line(c.get("/api/info", headers={"Authorization": "Bearer guessed"}), 403)
        assert c.get("/api/info", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200  # scripts
        c.cookies.set("dfc_vae_studio_7860", "guessed")
        assert c.get("/api/info").status_code == 403
    with client_for(studio, token=None) as c:  # --no-token
        assert c.get("/api/info").status_code == 200


@pytest.mark.parametrize("host", ["evil.example:7860", "evil.example", "127.0.0.1.evil.example:7860", ""])
def test_a_foreign_host_is_refused_dns_rebinding(client, host):
    headers = {"Host": host}
    assert "its own address" in one_json_line(client.post("/api/random", json={}, headers=headers), 403)
    assert client.post("/api/download", json={"face": "x", "photo": True}, headers=headers).status_code == 403
    assert client.get("/", headers=headers).status_code == 403


def test_the_bound_names_are_served(studio):
    for name in ("127.0.0.1:7860", "localhost:7860", "[::1]:7860", "LOCALHOST"):
        with client_for(studio) as c:
            c.get(f"/?token={TOKEN}")
            assert c.get("/api/info", headers={"Host": name}).status_code == 200, name
    with client_for(studio, host="studio.lan", base_url="http://studio.lan:7860") as c:
        assert c.get("/api/info", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert c.get("/api/info", headers={"Authorization": f"Bearer {TOKEN}", "Host": "other.lan"}).status_code == 403
    with client_for(studio, host="0.0.0.0", base_url="http://192.168.1.20:7860") as c:  # an address: no rebinding
        assert c.get("/api/info", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert c.get("/api/info", headers={"Authorization": f"Bearer {TOKEN}", "Host": "evil.example"}).status_code == 403


def test_a_post_from_another_origin_is_refused(client):
    before = len(client.studio.faces)
    for origin in ("http://evil.example", "null", "http://127.0.0.1:8000"):
        r = client.post("/api/random", json={}, headers={"Origin": origin})
        assert "another web page" in one_json_line(r, 403)
    assert len(client.studio.faces) == before  # nothing was run
    assert client.post("/api/random", json={}, headers={"Origin": HOME}).status_code == 200  # the page's own


def test_a_text_plain_body_is_not_json(client):
    before = len(client.studio.faces)
    for kind in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"Content-Type": kind} if kind else {}
        r = client.post("/api/random", content=b'{"temperature": 1}', headers=headers)
        assert "Content-Type: application/json" in one_json_line(r, 415)
    assert len(client.studio.faces) == before


def test_a_large_json_body_is_refused(client):
    face = client.post("/api/random", json={}).json()["id"]
    body = json.dumps({"face": face, "settings": {}, "padding": "x" * 2**20}).encode()
    r = client.post("/api/render", content=body, headers={"Content-Type": "application/json"})
    assert "larger than 64 KB" in one_json_line(r, 413)

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(20):
            yield b" " * 2**16

    r = client.post("/api/render", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_a_stalled_body_ends_the_request(studio):
    app = create_app(studio, None)
    app.body_timeout = 0.2
    sent = []

    async def receive():
        if not sent:
            sent.append("first")
            return {"type": "http.request", "body": b'{"temper', "more_body": True}
        await asyncio.sleep(3600)  # the client never sends the rest

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/random", "raw_path": b"/api/random", "query_string": b"",
             "headers": [(b"host", b"127.0.0.1:7860"), (b"content-type", b"application/json")],
             "scheme": "http", "server": ("127.0.0.1", 7860), "client": ("127.0.0.1", 5000), "http_version": "1.1",
             "root_path": "", "asgi": {"version": "3.0"}}
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 10))
    start = next(m for m in sent[1:] if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent[1:] if m["type"] == "http.response.body")
    assert start["status"] == 408 and b"stopped arriving" in body


def test_only_photo_formats_are_decoded(client):
    buf = io.BytesIO()
    Image.new("RGB", (178, 218), (90, 60, 30)).save(buf, format="PCX")
    r = client.post("/api/faces?aligned=1", content=buf.getvalue())
    assert "PCX format" in one_json_line(r, 400) and "JPEG, PNG or WebP" in r.json()["error"]


def test_every_response_refuses_to_be_framed(client):
    for r in (client.get("/"), client.get("/api/info"), client.post("/api/random", json={}),
              client.get("/api/info", headers={"Host": "evil.example"})):
        assert r.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


def test_face_ids_are_unguessable(client):
    ids = {client.post("/api/random", json={"seed": i}).json()["id"] for i in range(5)}
    assert len(ids) == 5 and all(len(i) >= 16 for i in ids) and "f1" not in ids


def test_a_huge_photo_is_kept_as_its_compressed_bytes(client, monkeypatch):
    """A flat 6000x5000 JPEG: a few hundred KB of file, 86 MiB of pixels. The studio keeps the file."""
    from dfc_vae.editing import align

    data = jpeg(6000, 5000)
    assert len(data) < 600_000
    decoded = {}

    def found_face(photo, largest):  # as if dlib had found a face in it; records what it was given
        decoded["size"] = photo.size
        aligned = np.full((218, 178, 3), 128, np.uint8)
        matrix = np.array([[0.1, 0, -200.0], [0, 0.1, -150.0]])
        return [align.AlignedFace(aligned, matrix, np.zeros((5, 2)), (0, 0, 1, 1), 1.0)]

    monkeypatch.setattr(align, "available", lambda: True)
    monkeypatch.setattr(align, "align_faces", found_face)
    face = client.post("/api/faces", content=data).json()
    kept = client.studio.faces[face["id"]]
    assert decoded["size"] == (6000, 5000) and face["has_photo"]
    assert isinstance(kept.photo, bytes) and len(kept.photo) == len(data)
    held = sum(f.input.nbytes + f.z.numel() * 4 + len(f.photo or b"") for f in client.studio.faces.values())
    assert held < 1_000_000  # was 90 MB: the decoded photo
    r = client.post("/api/download", json={"face": face["id"], "photo": True})
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (6000, 5000)


def test_the_studio_prints_its_url_with_the_token_and_warns_beyond_loopback(studio, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: calls.append((app, kw)))
    studio_module.serve(studio.run, None, "127.0.0.1", 7861, TOKEN)
    out = capsys.readouterr().out
    assert f"http://127.0.0.1:7861/?token={TOKEN}" in out and "warning" not in out
    assert calls[0][1]["limit_concurrency"] == studio_module.MAX_CONNECTIONS and calls[0][0].token == TOKEN
    studio_module.serve(studio.run, None, "0.0.0.0", 7861, TOKEN)
    out = capsys.readouterr().out
    assert "warning: --host 0.0.0.0" in out and "anyone who can reach" in out and "?token=" in out
    assert calls[1][0].token == TOKEN  # the token stays required
    studio_module.serve(studio.run, None, "192.168.1.20", 7861, None)
    out = capsys.readouterr().out
    assert "--no-token" in out and "http://192.168.1.20:7861/ " in out


@pytest.mark.parametrize("flags, message", [(["--token", "short"], "--token must be"),
                                            (["--token", "x" * 20 + "/?"], "--token must be")])
def test_a_bad_token_flag_is_one_line(tmp_path, capsys, flags, message):
    rc = main(["studio", "--run", str(tmp_path), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0]
    assert not any(Path(tmp_path).iterdir())
