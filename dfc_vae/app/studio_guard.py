"""What stands between the studio and every other web page, program and account that can reach it.

The studio holds people's photos, and a browser tab left open on it is reachable by any page the
same browser visits (cross-site requests, DNS rebinding) and by every account of the machine. So
every request passes `Guard`, an ASGI layer around the Starlette app:

* a secret token per start, as Jupyter has: the printed URL carries it (`/?token=...`); opening it
  sets an HttpOnly, SameSite=Strict cookie and sends the browser on to `/` without it; every
  `/api/` request needs the cookie or the header `Authorization: Bearer TOKEN` (401 without, 403
  with a wrong one). The page itself holds nothing secret and is served to anyone who may reach it;
  without the cookie it shows the message saying to open the printed URL.
* Host: only the names the studio was bound to (127.0.0.1, localhost, ::1 and --host's value; on a
  wildcard address also the machine's own names and any IP address) are served, which is what
  defeats DNS rebinding (an attacker's name pointed at 127.0.0.1).
* Origin: a POST that a browser says comes from another origin is refused.
* JSON routes take only `Content-Type: application/json` bodies (a cross-site form can send
  text/plain without asking) of at most MAX_JSON_BYTES; a body that stops arriving for
  BODY_TIMEOUT seconds ends the request.
* Every response says it may not be framed (X-Frame-Options, CSP frame-ancestors) and the page may
  only talk to the studio; an unexpected failure is a generic message, its detail in the log.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import secrets
import socket
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from dfc_vae.util.errors import UserError

# starlette (the optional extra `studio`) is imported where a response is made, as in studio.py.

log = logging.getLogger("dfc_vae.app.studio")

MAX_JSON_BYTES = 64 * 1024  # a render request is under 2 KB even with 40 sliders set
BODY_TIMEOUT = 30.0  # seconds a request body may stall before the request is ended
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
COOKIE = "dfc_vae_studio"  # + the port: two studios on one machine keep their own cookies
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_.~-]{16,256}")
HEADERS = [(b"x-frame-options", b"DENY"),
           (b"content-security-policy",
            b"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data: blob:; "
            b"connect-src 'self' blob: data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
           (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
GENERIC_FAILURE = ("the studio could not do this (an unexpected error; the terminal running `dfc-vae studio` shows "
                   "the detail); try another photo or setting")


class Refused(Exception):
    """A request the studio will not serve: its HTTP status and the one-line reason the page shows."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def new_token() -> str:
    return secrets.token_urlsafe(32)


def check_token(token: str) -> str:
    """A token given with --token, refused unless long and URL-safe (it is typed into URLs)."""
    if not TOKEN_PATTERN.fullmatch(token):
        raise UserError(f"--token must be 16 to 256 letters, digits or -_.~ ({len(token)} characters given); "
                        "leave it out for a random one")
    return token


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def studio_url(host: str, port: int, token: str | None) -> str:
    """The URL to print: the address the studio answers at, with its token."""
    shown = socket.gethostname() if host in WILDCARD_HOSTS else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def exposure_warning(host: str, token: str | None = "") -> str | None:
    """What a user must hear when the studio listens beyond this computer (None on loopback)."""
    if is_loopback(host):
        return None
    who = "anyone who can reach this address" + (" and has the URL with its token" if token is not None else
                                                 " (--no-token: no token asked)")
    return (f"warning: --host {host or '(all addresses)'} makes the studio reachable from other computers: {who} "
            "can use it and see the photos uploaded, and the connection is not encrypted")


def _host_name(value: str) -> str:
    """The name of a Host header without its port: 'localhost:7860' -> 'localhost', '[::1]:7860' -> '::1'."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def host_allowed(name: str, bound: str) -> bool:
    names = set(LOOPBACK_NAMES) | {bound.lower().strip("[]")}
    if bound in WILDCARD_HOSTS:
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        try:
            ipaddress.ip_address(name)
            return True  # an address (not a name an attacker controls) reached this machine
        except ValueError:
            pass
    return name in names


async def read_json(request, limit: int | None = None):
    """The JSON body of a request (None when empty), refused unless declared as JSON and at most
    `limit` bytes (default MAX_JSON_BYTES); read once per request."""
    if hasattr(request.state, "json"):
        return request.state.json
    limit = limit or MAX_JSON_BYTES
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise Refused(415, f"send the request as JSON with Content-Type: application/json (not {kind or 'none'})")
    declared = request.headers.get("content-length", "")
    too_large = Refused(413, f"the request is larger than {limit // 1024} KB; a studio request is a few settings")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise too_large
    try:
        request.state.json = json.loads(data) if data.strip() else None
    except ValueError:
        raise UserError("the request body must be JSON") from None
    return request.state.json


class Guard:
    """The ASGI layer described in the module's docstring, around `app`.

    token: the secret (None: --no-token, no token asked); host: the address the studio is bound to.
    """

    def __init__(self, app, token: str | None, host: str = "127.0.0.1", body_timeout: float | None = None):
        self.app, self.token, self.host = app, token, host
        self.body_timeout = body_timeout or BODY_TIMEOUT

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)  # lifespan
        started = False

        async def send_with_headers(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": list(message.get("headers", [])) + HEADERS}
            await send(message)

        try:
            refusal = self._check(scope)
            if refusal is not None:
                return await refusal(scope, receive, send_with_headers)
            await self.app(scope, self._timed(receive), send_with_headers)
        except Exception:
            # Starlette has answered with GENERIC_FAILURE where it could; the detail goes to the log only
            log.exception("the studio failed on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await _json(500, GENERIC_FAILURE)(scope, receive, send_with_headers)

    def _check(self, scope):
        """None when the request may go on, else the response refusing it."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        if not host_allowed(_host_name(host), self.host):
            return _json(403, f"the studio answers only at its own address, not at {host or 'an unnamed host'!r}; "
                              "open the URL `dfc-vae studio` printed")
        origin = headers.get("origin")
        if scope["method"] not in ("GET", "HEAD") and origin is not None and origin.lower() != f"http://{host.lower()}":
            return _json(403, f"requests from another web page ({origin}) are refused; use the studio's own page")
        if self.token is None:
            return None
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        cookie_name = f"{COOKIE}_{(scope.get('server') or ('', ''))[1]}"
        if scope["path"] == "/" and "token" in query:
            if not secrets.compare_digest(query["token"][0].encode(), self.token.encode()):
                return _json(403, "the token in this URL is not this studio's; open the URL `dfc-vae studio` "
                                  "printed when it started")
            return _enter(cookie_name, self.token)
        if not scope["path"].startswith("/api/"):
            return None
        given = _given_token(headers, cookie_name)
        if given is None:
            return _json(401, "this studio needs its token: open the URL `dfc-vae studio` printed when it started "
                              "(http://.../?token=...), or send the header Authorization: Bearer TOKEN")
        if not secrets.compare_digest(given.encode(), self.token.encode()):
            return _json(403, "the studio's token was wrong (it changes at every start): open the URL "
                              "`dfc-vae studio` printed when it started")
        return None

    def _timed(self, receive):
        """`receive`, ending the request (408) when the body stalls for body_timeout seconds."""
        done = False

        async def timed():
            nonlocal done
            if done:  # after the body: the wait for a disconnect may be long, and is no attack
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout)
            except asyncio.TimeoutError:
                raise Refused(408, f"the request's body stopped arriving for {self.body_timeout:g} s; "
                                   "send it again") from None
            done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        return timed


def _given_token(headers: dict, cookie_name: str) -> str | None:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    cookies = SimpleCookie()
    try:
        cookies.load(headers.get("cookie", ""))
    except Exception:  # a malformed Cookie header is no token
        return None
    return cookies[cookie_name].value if cookie_name in cookies else None


def _json(status: int, message: str):
    """An ASGI response of one JSON line {"error": message}."""
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status)


def _enter(cookie_name: str, token: str):
    """The answer to the printed URL: the cookie, and on to the page without the token in the address bar."""
    from starlette.responses import RedirectResponse

    response = RedirectResponse("/", 303)
    response.set_cookie(cookie_name, token, httponly=True, samesite="strict", path="/")
    return response
