"""Console sign-in: server-side sessions, CSRF, and refusing password guessing.

- The cookie holds a random 32-byte token; the database holds only its SHA-256 with the staff id,
  the session's CSRF token and its expiry. Every login issues a new token (and drops the one the
  browser came with), so a token planted before login is worth nothing (session fixation).
- Every POST carries the session's CSRF token in a hidden field (compared in constant time), and a
  browser's Origin (or Referer) must be this console's. The login form has no session yet: it is
  protected by a double-submit token (a cookie and the same value in the form).
- Failed logins are counted per staff key and per client address; past the limit within the
  window, login is refused — even with the right password — until the window moves on.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from urllib.parse import urlsplit

from aiohttp import web
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app import CLOCK, FACTORY, SETTINGS, WORKER
from bot.console.passwords import check_password
from handlers import messages as m
from storage import console as store
from storage.db import transaction
from storage.models import ConsoleSession, Staff

log = logging.getLogger("gridbot.console")

COOKIE = "gridbot_console"
LOGIN_COOKIE = "gridbot_login"
DB = web.RequestKey("console_db", AsyncSession)
STAFF = web.RequestKey("console_staff", Staff)
CSRF = web.RequestKey("console_csrf", str)
TOKEN_HASH = web.RequestKey("console_token_hash", str)
KICK = web.RequestKey("console_kick", bool)
ROW = web.RequestKey("console_session_row", ConsoleSession)
# Pages anyone may reach: the login form, the stylesheet, and one-time login links.
PUBLIC = frozenset({"/console/login", "/console/static/console.css"})
LINK_PREFIX = "/console/link/"


def is_public(path: str) -> bool:
    return path in PUBLIC or path.startswith(LINK_PREFIX)


# Pages load nothing from elsewhere and run no script: an injected tag could do little.
CSP = (
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def text_param(value: object, limit: int) -> str:
    """A form field or query value as text the database can take: at most `limit` characters and
    no NUL (PostgreSQL's text cannot hold one; asyncpg refuses the whole statement)."""
    return str(value).replace("\x00", "")[:limit]


def int_param(value: object) -> int | None:
    """A page number or row id, or None: ASCII digits within 64 bits. ("²".isdigit() is True and
    int("²") raises; a 30-digit page overflows the database's OFFSET.)"""
    text = str(value)
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def staff_of(request: web.Request) -> Staff:
    return request[STAFF]


def db(request: web.Request) -> AsyncSession:
    return request[DB]


@web.middleware
async def console_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One transaction per request; who is logged in; CSRF on every POST; the worker woken after
    commit when an action queued pushes."""
    config = request.config_dict
    if request.method == "POST" and not _same_origin(request):
        return forbidden()
    async with transaction(config[FACTORY]) as session:
        request[DB] = session
        token = request.cookies.get(COOKIE, "")
        found = (
            await store.live_session(session, token_hash=token_hash(token), now=config[CLOCK].now()) if token else None
        )
        if found is not None:
            row, staff = found
            request[STAFF], request[CSRF], request[TOKEN_HASH] = staff, row.csrf, row.token_hash
            request[ROW] = row
        elif not is_public(request.path):
            if request.method == "GET":
                return redirect("/console/login")
            return forbidden()
        # The login form and a link's form carry their own token (there may be no session yet).
        checked = found is not None and request.method == "POST" and not is_public(request.path)
        if checked and not _csrf_ok(await request.post(), row.csrf):
            return forbidden()
        response = await handler(request)
    if request.get(KICK):
        config[WORKER].kick()
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def forbidden() -> web.Response:
    return web.Response(status=403, text=m.CONSOLE_CSRF_FAILED)


def expected_origin(request: web.Request) -> str:
    configured: str = request.config_dict[SETTINGS].console_origin
    return configured or f"{request.scheme}://{request.host}"


def _same_origin(request: web.Request) -> bool:
    """A browser names the page a POST comes from: it must be ours. (No Origin and no Referer: not
    a browser, which cannot carry a victim's cookie anyway; the CSRF token still has to match.)"""
    expected = expected_origin(request)
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin == expected
    referer = request.headers.get("Referer")
    if referer is not None:
        parts = urlsplit(referer)
        return f"{parts.scheme}://{parts.netloc}" == expected
    return True


def _csrf_ok(form: Mapping[str, object], expected: str) -> bool:
    sent = form.get("csrf", "")
    return isinstance(sent, str) and bool(sent) and hmac.compare_digest(sent.encode(), expected.encode())


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/console/",
        httponly=True,
        samesite="Lax",
        secure=request.config_dict[SETTINGS].console_secure_cookies,
    )


async def login_form(request: web.Request) -> web.StreamResponse:
    from bot.console.pages import render

    return _login_page(request, render, error=None, status=200)


def _login_page(
    request: web.Request, render: Callable[..., web.Response], *, error: str | None, status: int
) -> web.Response:
    return pre_login_form(request, render, "login.html", {"error": error}, status=status)


def pre_login_form(
    request: web.Request, render: Callable[..., web.Response], template: str, context: dict[str, object], *, status: int
) -> web.Response:
    """A page whose form is posted before there is a session: it carries a double-submit token."""
    token = secrets.token_urlsafe(32)
    response = render(request, template, context | {"login_csrf": token}, status=status)
    set_cookie(request, response, LOGIN_COOKIE, token, max_age=3600)
    return response


def flash(request: web.Request, location: str, text: str) -> web.Response:
    """POST-redirect-GET: remember what the action said, and send the browser to `location`."""
    store.set_flash(db(request), request[ROW], path=location, text=text)
    return redirect(location)


def take_flash(request: web.Request) -> str | None:
    return store.take_flash(db(request), request[ROW], path=request.path) if ROW in request else None


async def login(request: web.Request) -> web.StreamResponse:
    """Check the password (unless this key or address is throttled) and start a fresh session."""
    from bot.console.pages import render

    config = request.config_dict
    settings, now, session = config[SETTINGS], config[CLOCK].now(), db(request)
    form = await request.post()
    if not login_csrf_ok(request, form):
        return forbidden()
    key = text_param(form.get("key", ""), 200).strip()[:64]
    password = str(form.get("password", ""))[:200]
    window = timedelta(minutes=settings.console_failure_window_minutes)
    subjects = [f"key:{key}", f"ip:{request.remote or '?'}"]
    for subject in subjects:
        if await store.failures_since(session, subject=subject, since=now - window) >= settings.console_max_failures:
            log.info("console login throttled", extra={"subject": subject.split(":")[0]})
            error = m.CONSOLE_LOGIN_THROTTLED.format(minutes=settings.console_failure_window_minutes)
            return _login_page(request, render, error=error, status=429)
    staff = await store.staff_by_key(session, key) if key else None
    ok = await asyncio.to_thread(check_password, password, staff.password_hash if staff else None)
    if staff is None or not ok:
        await store.record_failure(session, subjects=subjects, now=now, window_start=now - window)
        log.info("console login failed")
        return _login_page(request, render, error=m.CONSOLE_LOGIN_FAILED, status=401)
    await store.forget_failures(session, subject=subjects[0])
    await store.purge_failures(session, before=now - window)
    return await start_session(request, staff)


def login_csrf_ok(request: web.Request, form: Mapping[str, object]) -> bool:
    """The double-submit token of a form shown before login: the cookie and the field agree."""
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    sent = form.get("login_csrf", "")
    return bool(cookie) and isinstance(sent, str) and hmac.compare_digest(sent.encode(), cookie.encode())


async def start_session(request: web.Request, staff: Staff) -> web.Response:
    """A fresh session for `staff` (a new random token; the one the browser came with, if any, is
    closed), and off to the case list."""
    config = request.config_dict
    settings, now, session = config[SETTINGS], config[CLOCK].now(), db(request)
    await store.purge_expired(session, now=now)
    if TOKEN_HASH in request:  # logged in already: that session ends; the new one has a new token
        await store.close_session(session, token_hash=request[TOKEN_HASH])
    token = secrets.token_urlsafe(32)
    hours = settings.console_session_hours
    assert staff.id is not None
    await store.open_session(
        session,
        token_hash=token_hash(token),
        staff_id=staff.id,
        csrf=secrets.token_urlsafe(32),
        now=now,
        expires_at=now + timedelta(hours=hours),
    )
    staff.last_login_at = now
    session.add(staff)
    log.info("console login", extra={"staff": staff.key})
    response = redirect("/console/cases")
    set_cookie(request, response, COOKIE, token, max_age=hours * 3600)
    response.del_cookie(LOGIN_COOKIE, path="/console/")
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    await store.close_session(db(request), token_hash=request[TOKEN_HASH])
    response = redirect("/console/login")
    response.del_cookie(COOKIE, path="/console/")
    return response
