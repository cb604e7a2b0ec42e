"""`dfc-vae studio`: a local web page to explore a trained model with sliders.

A `Studio` keeps the model and, per face, the latent code: an uploaded photo is encoded once
(its posterior mean), a random face is a draw z ~ N(0, T^2 I), or from the prior fitted to the faces
(runs/prior.py: its Gaussian, its mixture, or faces with chosen labels); every slider move afterwards only
decodes z + sum_i alpha_i v_i (optionally blended towards a second face) and sends the pixels
back. `create_app` wraps it in a small Starlette app serving one static page
(dfc_vae/app/studio_page/index.html) and a JSON/PNG API:

    GET  /                  the page
    GET  /api/info          attribute names (in slider order, with their marks), image size, run, its provenance, limits
    POST /api/faces         body: the photo's bytes (?aligned=1: already an aligned crop) -> face
    POST /api/random        {"temperature": T, "seed": S?, "prior": P?, "where": ["Smiling=1", ...]?} -> face
    POST /api/render        {"face", "settings": {name: alpha}, "other", "mix"} -> the edit, PNG (S x S)
    POST /api/download      the same, + "photo": true for the edit pasted back into the uploaded photo -> PNG

Uploads are read into memory up to MAX_UPLOAD_BYTES and refused beyond MAX_UPLOAD_PIXELS; a kept
photo stays as its uploaded (compressed) bytes and is decoded again when it is pasted into, and
decoding and pasting run HEAVY_WORK at a time. Problems with an upload are answered with a JSON
{"error": ...} the page shows; they never stop the server. Who may call the API at all (the token,
Host and Origin checks, the limits on request bodies) is app/studio_guard.py's.

Starlette + uvicorn rather than Gradio: two small pure-Python packages (the optional extra
`pip install "dfc_vae[studio]"`), one readable HTML page, and an API Starlette's TestClient and a
headless browser test offline.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import importlib.util
import io
import itertools
import secrets
import shutil
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dfc_vae.util.errors import UserError
from dfc_vae.runs.provenance import provenance
from dfc_vae.util.images import grid, save_png, to_tensor, to_uint8
from dfc_vae.editing.latent import add_attributes
from dfc_vae.evaluation.samples import request_scores, run_classifier
from dfc_vae.runs.prior import PRIOR_TITLES, drawn_to_order, parse_where
from dfc_vae.util.choices import PRIORS
from dfc_vae.util.argtypes import in_range
from dfc_vae.app.studio_guard import GENERIC_FAILURE, Guard, Refused, exposure_warning, read_json, studio_url
from dfc_vae.editing.attributes import attribute_notes
from dfc_vae.evaluation.classifier import scored_attributes
from dfc_vae.editing import align
from dfc_vae.editing.edit import aligned_input, read_photo
from dfc_vae.editing.align import paste_back
from dfc_vae.data.celeba import ALIGNED_SIZE
from dfc_vae.data.decode import crop_box, open_photo

# starlette and uvicorn are the optional extra `studio`: imported where the app is built and served, so that this
# module imports without them and require_web_libraries can say what to install.
INSTALL_HINT = 'pip install "dfc_vae[studio]"'
MAX_UPLOAD_BYTES = 20 * 2**20
MAX_UPLOAD_PIXELS = 30_000_000  # e.g. 6000 x 5000
MAX_FACES = 32  # the least recently used faces are forgotten beyond this many
ALPHA_LIMIT = 2.0  # attribute sliders run from -2 to 2
TEMPERATURE_LIMIT = 2.0
DOWNLOAD_SIZE = 192  # cells of the downloaded strip are enlarged to at least this many pixels
HEAVY_WORK = 2  # full-size photos decoded or pasted into at once (a 30-megapixel photo is 86 MiB decoded)
MAX_CONNECTIONS = 32  # uvicorn answers 503 beyond this many connections and requests at once


@dataclass
class Face:
    """One face the page works on.

    input: (S, S, 3) uint8, what the encoder saw (for a random face: its decode); z: (D,) its
    latent code (posterior mean, or the prior draw); photo, matrix: the uploaded photo's bytes and its
    photo -> aligned similarity, when the face was aligned (for pasting the edit back).
    """

    input: np.ndarray
    z: torch.Tensor
    source: str
    photo: bytes | None = None
    matrix: np.ndarray | None = None


class Studio:
    """The model state behind the page: a LoadedRun, optional AttributeVectors, and the faces."""

    def __init__(self, run, vectors=None):
        if vectors is not None and vectors.latent_dim != run.config.latent_dim:
            raise UserError(f"the attribute vectors are {vectors.latent_dim}-d but the run's latent has "
                            f"{run.config.latent_dim}; compute them for this run with `dfc-vae attributes`")
        self.run, self.vectors = run, vectors
        self.model = run.model.eval()
        self.faces: OrderedDict[str, Face] = OrderedDict()
        self.workdir = Path(tempfile.mkdtemp(prefix="dfc_vae_studio_"))
        self._files = itertools.count(1)  # names in the temporary folder
        self._lock = threading.RLock()  # one model (or detector) call at a time; requests come on several threads
        self._heavy = threading.BoundedSemaphore(HEAVY_WORK)

    @property
    def size(self) -> int:
        return self.run.config.image_size

    @property
    def attribute_names(self) -> list[str]:
        """The sliders, in order: attributes the classifier scores first; none for those without a vector."""
        return list(self.attribute_notes)

    @functools.cached_property
    def attribute_notes(self) -> dict[str, str]:
        """Each slider's attribute -> "" (scored), "few examples" or "not measured" (editing.attributes)."""
        return attribute_notes(self.vectors, scored_attributes(self.run.path)) if self.vectors is not None else {}

    def info(self) -> dict:
        prior = self.run.prior
        return {"run": self.run.name, "step": self.run.step, "image_size": self.size,
                "priors": {k: PRIOR_TITLES[k] for k in (PRIORS if prior is not None else ("normal",))},
                "where_attributes": prior.names if prior is not None else [],
                "attributes": self.attribute_names, "alpha_limit": ALPHA_LIMIT,
                "temperature_limit": TEMPERATURE_LIMIT, "align": align.available(),
                "max_upload_bytes": MAX_UPLOAD_BYTES, "max_upload_pixels": MAX_UPLOAD_PIXELS,
                "notes": provenance(bool(self.run.meta.get("synthetic")), self.run.meta.get("vgg_weights", "")),
                "model": self.run.description, "attribute_notes": self.attribute_notes}

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------------ faces

    def _keep(self, face: Face) -> str:
        face_id = secrets.token_urlsafe(12)  # unguessable: knowing one face's id gives no other's
        self.faces[face_id] = face
        while len(self.faces) > MAX_FACES:
            self.faces.popitem(last=False)
        return face_id

    def face(self, face_id) -> Face:
        if face_id not in self.faces:
            raise UserError(f"face {face_id!r} is unknown or was forgotten; upload the photo again")
        self.faces.move_to_end(face_id)  # the least recently used faces are forgotten first
        return self.faces[face_id]

    @torch.no_grad()
    def add_photo(self, data: bytes, already_aligned: bool = False) -> tuple[str, str]:
        """Encode an uploaded photo once -> (face id, a note on how it was read).

        With the align extra installed, the largest face found is aligned onto CelebA's frame
        (unless `already_aligned`); a photo without a detectable face, or without the extra, is
        taken as a CelebA-style aligned crop (so its width:height must be 178:218's).
        """
        if len(data) > MAX_UPLOAD_BYTES:
            raise UserError(f"the photo is {len(data) / 2**20:.1f} MB; the studio takes at most "
                            f"{MAX_UPLOAD_BYTES // 2**20} MB, so shrink it first")
        if not data:
            raise UserError("the upload is empty; choose a JPEG or PNG photo")
        face, note = None, ""
        with self._heavy:
            photo = _open_upload(data)
            if align.available() and not already_aligned:
                with self._lock:
                    found = align.align_faces(photo, largest=True)
                if found:
                    f = found[0]
                    pixels = aligned_input(f.image, self.size, self.run.config.crop)
                    face = Face(pixels, self._encode(pixels), "aligned photo", data, f.matrix)
                    note = f"face found and aligned (rotated {f.rotation_degrees:+.1f} degrees, scaled x{f.scale:.2f})"
                else:
                    note = "no face found, so the photo is taken as an aligned crop"
            elif not already_aligned:
                note = f"taken as an aligned crop (automatic alignment needs {align.INSTALL_HINT})"
            del photo  # the face keeps the upload's compressed bytes, not its pixels
            if face is None:  # the uploaded bytes as they are: read exactly as `dfc-vae edit` reads a file
                try:
                    pixels = read_photo(data, self.size, self.run.config.crop)
                except UserError as e:
                    raise UserError(f"{note}: {e}" if note else str(e)) from None
                face = Face(pixels, self._encode(pixels), "aligned crop")
                note = note or "taken as an aligned crop"
        return self._keep(face), note

    @torch.no_grad()
    def add_random(self, temperature: float = 1.0, seed: int | None = None, prior: str = "normal",
                   where: list | None = None) -> tuple[str, str]:
        """A face drawn from the prior, z ~ N(0, temperature^2 I), or from `prior` (PRIORS) or the faces with the
        labels `where` (["Smiling=1", ...]) of the prior fitted to the faces -> (face id, the classifier's verdicts
        on the labels asked for, or "")."""
        temperature = _number(temperature, "temperature", 0.0, TEMPERATURE_LIMIT)
        gen = torch.Generator().manual_seed(int(_number(seed, "seed", 0, 2**63 - 1))) if seed is not None else None
        asked = parse_where([str(w) for w in where or []], "with")
        fitted = self.run.prior
        if (asked or prior != "normal") and fitted is None:
            raise UserError("the model has no prior fitted to the faces; fit one with `dfc-vae fit-prior --run RUN`")
        if asked:
            draw, source = drawn_to_order(fitted, asked, temperature)
        else:
            draw = fitted.draw(prior, temperature) if prior != "normal" else None
            source = f"random ({PRIOR_TITLES.get(prior, prior)}), temperature {temperature:g}"
        z = draw(1, gen)[0] if draw else torch.randn(self.run.config.latent_dim, generator=gen) * temperature
        with self._lock:
            pixels = to_uint8(self.model.decode(z[None].to(self.run.device)))[0]
            clf = self.classifier if asked else None
            note = "; ".join(line.strip() for line in request_scores(self.run, clf, z[None], asked)) if clf else ""
        return self._keep(Face(pixels, z, source)), note

    @functools.cached_property
    def classifier(self):
        """The attribute classifier kept with the model (None: none), the judge of faces drawn to order."""
        return run_classifier(self.run)

    def _encode(self, pixels: np.ndarray) -> torch.Tensor:
        with self._lock:
            return self.model.encode(to_tensor(np.array(pixels[None])).to(self.run.device))[0][0].float().cpu()

    # ------------------------------------------------------------------ rendering

    def latent(self, face_id: str, settings: dict | None = None, other: str | None = None,
               mix: float = 0.0) -> torch.Tensor:
        """(D,) (1 - mix) z_face + mix z_other + sum_i alpha_i v_i."""
        z = self.face(face_id).z
        if other:
            mix = _number(mix, "mix", 0.0, 1.0)
            z = (1 - mix) * z + mix * self.face(other).z
        settings = {str(k): _number(v, k, -ALPHA_LIMIT, ALPHA_LIMIT) for k, v in (settings or {}).items()}
        settings = {k: v for k, v in settings.items() if v != 0}
        if settings:
            if self.vectors is None:
                raise UserError("no attribute vectors loaded; start the studio with --attributes FILE")
            v = torch.stack([self.vectors.vector(n) for n in settings])
            z = add_attributes(z, v, list(settings.values()))
        return z

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> np.ndarray:
        """(D,) latent -> (S, S, 3) uint8."""
        with self._lock:
            return to_uint8(self.model.decode(z[None].to(self.run.device)))[0]

    def render(self, face_id: str, settings: dict | None = None, other: str | None = None, mix: float = 0.0) -> np.ndarray:
        return self.decode(self.latent(face_id, settings, other, mix))

    def strip_png(self, face_id: str, settings: dict | None = None, other: str | None = None, mix: float = 0.0) -> bytes:
        """input | reconstruction | edit, enlarged, with a caption saying what was done."""
        face = self.face(face_id)
        edit = self.render(face_id, settings, other, mix)
        factor = max(1, -(-DOWNLOAD_SIZE // self.size))
        cells = np.stack([face.input, self.decode(face.z), edit]).repeat(factor, 1).repeat(factor, 2)
        change = ", ".join(f"{k} {float(v):+g}" for k, v in (settings or {}).items() if float(v)) or "no attributes"
        if other:
            change += f"; blended {float(mix):.2f} towards face {other}"
        caption = self.info()["notes"] + [f"{face.source} | reconstruction | edit: {change}",
                                          f"model {self.run.name} step {self.run.step}: {self.run.description}"]
        path = self.workdir / f"strip{next(self._files)}.png"
        try:
            save_png(path, grid(cells, 3), caption, {"settings": change})
            return path.read_bytes()
        finally:
            path.unlink(missing_ok=True)

    def photo_png(self, face_id: str, settings: dict | None = None, other: str | None = None, mix: float = 0.0) -> bytes:
        """The uploaded photo with the edited face pasted back (faces that were aligned only)."""
        face = self.face(face_id)
        if face.photo is None:
            raise UserError("this face was not found in a photo, so there is no photo to paste it back into; "
                            "download the strip instead")
        box = tuple(int(round(v)) for v in crop_box(ALIGNED_SIZE, self.run.config.crop))
        edit = self.render(face_id, settings, other, mix)
        with self._heavy:
            return png_bytes(np.asarray(paste_back(_open_upload(face.photo), edit, face.matrix, box)))


def png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def data_url(pixels: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(pixels)).decode()


def _number(value, name: str, low: float, high: float) -> float:
    """A JSON value as a float within [low, high], named in the page's own words."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a number, not {value!r}") from None
    if not in_range(x, "float", {"min": low, "max": high}):
        raise UserError(f"{name} must be between {low:g} and {high:g}, not {value!r}")
    return x


def _open_upload(data: bytes) -> Image.Image:
    """The uploaded bytes as an RGB image, after checking its dimensions from the header alone."""
    return open_photo(data, "the photo", MAX_UPLOAD_PIXELS)


# ----------------------------------------------------------------------------- the web app


def create_app(studio: Studio, token: str | None, host: str = "127.0.0.1"):
    """The app of `studio` (closing the studio, and its temporary folder, on shutdown): Starlette's,
    behind the Guard that asks for `token` (None: none) and serves only `host`'s names."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse

    async def user_error(request, exc):
        return JSONResponse({"error": str(exc)}, 400)

    async def refused(request, exc):
        return JSONResponse({"error": str(exc)}, exc.status)

    async def server_error(request, exc):  # the detail goes to the log (Guard), never to the page
        return JSONResponse({"error": GENERIC_FAILURE}, 500)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            studio.close()

    app = Starlette(routes=_routes(studio), lifespan=lifespan,
                    exception_handlers={UserError: user_error, Refused: refused, Exception: server_error})
    return Guard(app, token, host)


def _routes(studio: Studio) -> list:
    """The page and the JSON/PNG API (the module's docstring lists them), each request answered by `studio`."""
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    page = resources.files(__package__).joinpath("studio_page/index.html").read_text(encoding="utf-8")

    def face_json(face_id: str, note: str = "") -> dict:
        face = studio.face(face_id)
        return {"id": face_id, "source": face.source, "note": note, "has_photo": face.photo is not None,
                "input": data_url(face.input), "reconstruction": data_url(studio.decode(face.z))}

    async def edit_request(request: Request) -> dict:
        body = await read_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("settings", {}), dict):
            raise UserError('the request must be a JSON object like {"face": "f1", "settings": {"Smiling": 1}}')
        return {"face_id": body.get("face"), "settings": body.get("settings") or {}, "other": body.get("other") or None,
                "mix": body.get("mix", 0.0)}

    async def index(request):
        return HTMLResponse(page)

    async def info(request):
        return JSONResponse(studio.info())

    def too_large():
        return JSONResponse({"error": f"the photo is larger than {MAX_UPLOAD_BYTES // 2**20} MB; shrink it first"}, 413)

    async def upload(request: Request):
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
            return too_large()
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_UPLOAD_BYTES:
                return too_large()
        aligned = request.query_params.get("aligned", "0") in ("1", "true", "yes")
        face_id, note = await run_in_threadpool(studio.add_photo, bytes(data), aligned)
        return JSONResponse(await run_in_threadpool(face_json, face_id, note))

    async def random_face(request: Request):
        body = await read_json(request)
        body = body if isinstance(body, dict) else {}
        where = body.get("where") or []
        if not isinstance(where, list):
            raise UserError('"where" must be a list like ["Smiling=1", "Male=0"]')
        face_id, note = await run_in_threadpool(studio.add_random, body.get("temperature", 1.0), body.get("seed"),
                                                str(body.get("prior", "normal")), where)
        return JSONResponse(await run_in_threadpool(face_json, face_id, note))

    async def render(request: Request):
        args = await edit_request(request)
        pixels = await run_in_threadpool(studio.render, **args)
        return Response(png_bytes(pixels), media_type="image/png", headers={"Cache-Control": "no-store"})

    async def download(request: Request):
        args = await edit_request(request)
        photo = bool((await read_json(request)).get("photo"))
        data = await run_in_threadpool(studio.photo_png if photo else studio.strip_png, **args)
        name = "dfc_vae_photo.png" if photo else "dfc_vae_edit.png"
        return Response(data, media_type="image/png", headers={"Content-Disposition": f'attachment; filename="{name}"'})

    return [Route("/", index), Route("/api/info", info), Route("/api/faces", upload, methods=["POST"]),
            Route("/api/random", random_face, methods=["POST"]), Route("/api/render", render, methods=["POST"]),
            Route("/api/download", download, methods=["POST"])]


def require_web_libraries() -> None:
    missing = [m for m in ("starlette", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"the studio needs {' and '.join(missing)}; install them with {INSTALL_HINT}")


def serve(run, vectors=None, host: str = "127.0.0.1", port: int = 7860, token: str | None = None) -> None:
    """Run the studio at http://HOST:PORT until interrupted, asking for `token` (None: none)."""
    require_web_libraries()
    import uvicorn

    studio = Studio(run, vectors)
    try:
        warning = exposure_warning(host, token)
        if warning:
            print(f"dfc-vae studio: {warning}", flush=True)
        print(f"dfc-vae studio: open {studio_url(host, port, token)} (Ctrl+C stops it)", flush=True)
        uvicorn.run(create_app(studio, token, host), host=host, port=port, log_level="warning",
                    limit_concurrency=MAX_CONNECTIONS)
    finally:
        studio.close()
