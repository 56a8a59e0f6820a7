"""The admin console's HTTP side: a sub-application mounted at /admin.

Pages are rendered on the server (aiohttp-jinja2, autoescaped templates in
`templates/`); every action is a plain HTML form POST followed by a
redirect (303, "post/redirect/get"), so nothing needs JavaScript;
`static/console.js` only adds copy-to-clipboard. Two middlewares guard
every page: `guard` (the signed session cookie, its expiry, the CSRF token
of every POST) and `html_errors` (a `BridgeError` becomes an HTML page, not
problem+json). Every unit of work is scoped to the signed-in admin's
company, so another company's ids answer 404.

Secrets shown here (feed URLs, a new app password) are never put in a
redirect URL or a cookie, and pages carry `Cache-Control: no-store`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bridge.api.http import client_address
from bridge.dav import passwords
from bridge.db import repo
from bridge.db.models import FeedLink
from bridge.errors import BridgeError, Conflict, Forbidden, Invalid, NotFound
from bridge.feeds import service as feeds
from bridge.keys import DB, SECRET, SETTINGS
from bridge.notify import email as mail
from bridge.sync import service as calendars
from bridge.web import accounts, invite, service
from bridge.web import sessions as sess
from bridge.web.describe import SOURCE_LABELS

log = logging.getLogger("calbridge.web")
HERE = Path(__file__).parent
ADMIN = web.RequestKey("admin", accounts.AdminInfo)
SESSION = web.RequestKey("session", sess.Session)
PUBLIC = {"/admin/login", "/admin/logout"}
PRIVACY = {
    "full": "Full details",
    "limited": "Service and time only (no customer data)",
    "busy": "Busy/free only",
}
DONE = {
    "feed-created": "Feed link created.",
    "feed-rotated": "Feed link rotated: the old URL no longer works. Share the new one.",
    "feed-revoked": "Feed link revoked: its URL no longer works.",
    "invited": "Invitation sent.",
    "app-password-revoked": "App password revoked: clients using it are signed out.",
    "signed-out": "You are signed out.",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- helpers ------------------------------------------------------------------

def _secure(request: web.Request) -> bool:
    return request.config_dict[SETTINGS].base_url.startswith("https://")


def _redirect(location: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location)


def _safe_next(value: str | None) -> str:
    """Only a path inside the console (no open redirect)."""
    if value and value.startswith("/admin/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/admin/staff"


def _form_str(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


def _int_param(value: str | None, name: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except ValueError:
        raise Invalid(f"{name} must be a number", field=name) from None
    if number < 1:
        raise Invalid(f"{name} must be a number", field=name)
    return number


def _path_id(request: web.Request, name: str) -> int:
    try:
        return int(request.match_info[name])
    except ValueError:
        raise NotFound("no such page") from None


def _local(when: dt.datetime, timezone: str) -> str:
    return when.astimezone(ZoneInfo(timezone)).strftime("%a %-d %b %Y, %H:%M")


def render(request: web.Request, template: str, context: dict[str, Any], *,
           status: int = 200) -> web.Response:
    admin = request.get(ADMIN)
    session = request.get(SESSION)
    base = {
        "admin": admin,
        "csrf": sess.csrf_token(request.config_dict[SECRET], session.nonce) if session else "",
        "done": DONE.get(request.query.get("done", "")),
        "path": request.path,
        "local": (lambda when: _local(when, admin.company_timezone)) if admin else None,
    }
    response = aiohttp_jinja2.render_template(template, request, {**base, **context},
                                              status=status)
    return response


def _feed_view(s: Any, link: FeedLink, secret: bytes, base_url: str) -> dict[str, Any]:
    data = feeds.link_json(s, link, secret, base_url)
    data["privacy_label"] = PRIVACY.get(link.privacy, link.privacy)
    return data


# --- middlewares --------------------------------------------------------------

@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if not request.path.startswith("/admin/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
        "form-action 'self'; base-uri 'none'"
    )
    return response


_ERROR_PAGES: list[tuple[type[BridgeError], int, str]] = [
    (NotFound, 404, "Not found"),
    (Forbidden, 403, "Forbidden"),
    (Invalid, 400, "Invalid request"),
    (Conflict, 409, "Not possible"),
    (BridgeError, 400, ""),
]


@web.middleware
async def html_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A `BridgeError` from any page becomes an HTML page with its message."""
    try:
        return await handler(request)
    except BridgeError as exc:
        status, title = next((st, t) for cls, st, t in _ERROR_PAGES if isinstance(exc, cls))
        return render(request, "error.html", {"title": title or exc.title,
                                              "message": exc.message}, status=status)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as exc:
        return render(request, "error.html", {"title": exc.reason,
                                              "message": "There is no such page here."},
                      status=exc.status)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A valid, unexpired session for every page but sign-in; a CSRF token on every POST."""
    if request.path in PUBLIC or request.path.startswith("/admin/static/"):
        return await handler(request)
    secret = request.config_dict[SECRET]
    raw = request.cookies.get(sess.COOKIE, "")
    session = sess.decode(raw, secret) if raw else None
    # After signing in, a GET comes back to where it was; a form POST is not
    # replayed (nothing it asked for was done), the admin starts again.
    target = request.path_qs if request.method == "GET" else "/admin/staff"
    if session is None:
        raise _redirect("/admin/login?" + urllib.parse.urlencode({"next": target}))
    if session.expired():
        response = _redirect("/admin/login?" + urllib.parse.urlencode(
            {"next": target, "expired": "1"}))
        response.del_cookie(sess.COOKIE, path="/admin")
        raise response
    admin = await request.config_dict[DB].read(accounts.load_admin, session.admin_id)
    if (admin is None or admin.company_id != session.company_id
            or sess.password_fingerprint(secret, admin.password_hash) != session.fingerprint):
        response = _redirect("/admin/login?" + urllib.parse.urlencode({"next": target}))
        response.del_cookie(sess.COOKIE, path="/admin")
        raise response
    request[ADMIN] = admin
    request[SESSION] = session
    if request.method not in ("GET", "HEAD"):
        form = await request.post()
        if not sess.check_csrf(secret, session.nonce, _form_str(form, "csrf")):
            return render(request, "error.html", {
                "title": "This form has expired",
                "message": "The form was not sent from this page or has expired, so nothing "
                           "was changed. Go back, reload the page and try again.",
            }, status=403)
    return await handler(request)


# --- sign in / out -----------------------------------------------------------

def _login_page(request: web.Request, *, nonce: str, email: str = "", error: str = "",
                status: int = 200) -> web.Response:
    secret = request.config_dict[SECRET]
    response = render(request, "login.html", {
        "login_csrf": sess.csrf_token(secret, nonce),
        "email": email,
        "error": error,
        "next": _safe_next(request.query.get("next")),
        "expired": request.query.get("expired") == "1",
    }, status=status)
    response.set_cookie(sess.LOGIN_COOKIE, nonce, path="/admin", httponly=True,
                        samesite="Lax", secure=_secure(request), max_age=3600)
    return response


async def login_form(request: web.Request) -> web.Response:
    nonce = request.cookies.get(sess.LOGIN_COOKIE) or sess.new_nonce()
    return _login_page(request, nonce=nonce)


async def login(request: web.Request) -> web.StreamResponse:
    secret = request.config_dict[SECRET]
    settings = request.config_dict[SETTINGS]
    db = request.config_dict[DB]
    form = await request.post()
    nonce = request.cookies.get(sess.LOGIN_COOKIE, "")
    email = _form_str(form, "email").strip()
    password = _form_str(form, "password")
    if not nonce or not sess.check_csrf(secret, nonce, _form_str(form, "csrf")):
        return _login_page(request, nonce=sess.new_nonce(), email=email, status=403,
                           error="The sign-in form expired. Please try again.")
    if not email or not password:
        return _login_page(request, nonce=nonce, email=email, status=422,
                           error="Enter your email and password.")
    remote = client_address(request, settings.server.trust_proxy) or "unknown"
    try:
        await db.read(accounts.check_rate, email, remote, settings.web)
    except accounts.TooManyAttempts as exc:
        response = _login_page(request, nonce=nonce, email=email, error=exc.message, status=429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    info = await db.write(accounts.authenticate, email, password)
    if info is None:
        await db.write(accounts.record_failure, email, remote, settings.web)
        return _login_page(request, nonce=nonce, email=email, status=401,
                           error="Wrong email or password.")
    session = sess.new_session(info.id, info.company_id,
                               sess.password_fingerprint(secret, info.password_hash),
                               settings.web.session_minutes)
    response = _redirect(_safe_next(_form_str(form, "next")))
    response.set_cookie(sess.COOKIE, sess.encode(session, secret), path="/admin",
                        httponly=True, samesite="Lax", secure=_secure(request),
                        max_age=settings.web.session_minutes * 60)
    response.del_cookie(sess.LOGIN_COOKIE, path="/admin")
    log.info("admin %s signed in", info.id)
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    # Signing out needs no CSRF check of its own: a forged sign-out only
    # signs someone out. It clears the cookie; a copied cookie still ends
    # at its expiry or when the password changes.
    response = _redirect("/admin/login?done=signed-out")
    response.del_cookie(sess.COOKIE, path="/admin")
    raise response


async def home(request: web.Request) -> web.StreamResponse:
    raise _redirect("/admin/staff")


# --- staff --------------------------------------------------------------------

async def staff_list(request: web.Request) -> web.Response:
    admin = request[ADMIN]
    search = request.query.get("q", "")[:200]
    group_raw = request.query.get("group", "")
    db = request.config_dict[DB]

    def unit(s: Any) -> tuple[list[service.StaffRow], Any, str, dict[int, Any]]:
        group_id = None
        error = ""
        try:
            group_id = _int_param(group_raw, "group")
            if group_id is not None:
                repo.get_group(s, admin.company_id, group_id)
        except (Invalid, NotFound):
            error, group_id = "There is no such group.", None
        rows = service.staff_rows(s, admin.company_id, search=search, group_id=group_id)
        degraded = calendars.staff_degraded(s, [r.id for r in rows])
        return rows, list(service.groups(s, admin.company_id)), error, degraded

    rows, groups, error, degraded = await db.read(unit)
    return render(request, "staff_list.html", {
        "rows": rows, "groups": groups, "q": search, "group": group_raw, "error": error,
        "degraded": degraded,
    }, status=404 if error else 200)


def _staff_context(s: Any, admin: accounts.AdminInfo, staff_id: int, secret: bytes,
                   base_url: str) -> dict[str, Any]:
    staff = repo.get_staff(s, admin.company_id, staff_id)
    links = [_feed_view(s, link, secret, base_url)
             for link in feeds.list_feeds(s, admin.company_id) if link.staff_id == staff.id]
    changes = service.recent_changes(s, admin.company_id, staff_id=staff.id, limit=10,
                                     timezone=staff.timezone)
    return {
        "app_passwords": [passwords.app_password_json(p)
                          for p in passwords.list_for(s, admin.company_id, staff.id)
                          if p.revoked_at is None],
        "calendars": [calendars.link_json(link)
                      for link in calendars.list_links(s, admin.company_id, staff.id)],
        "staff": {"id": staff.id, "name": staff.name, "email": staff.email,
                  "timezone": staff.timezone, "active": staff.active,
                  "groups": [g.name for g in staff.groups]},
        "links": links,
        "changes": changes.entries,
        "caldav": {"url": f"{base_url}/dav/", "username": staff.email,
                   "well_known": f"{base_url}/.well-known/caldav",
                   "host": urllib.parse.urlsplit(base_url).netloc},
    }


async def staff_page(request: web.Request, *, status: int = 200,
                     extra: dict[str, Any] | None = None) -> web.Response:
    admin = request[ADMIN]
    staff_id = _path_id(request, "staff_id")
    settings = request.config_dict[SETTINGS]
    ctx = await request.config_dict[DB].read(_staff_context, admin, staff_id,
                                             request.config_dict[SECRET], settings.base_url)
    ctx.update({"privacy_levels": PRIVACY, "form": {}, "errors": {}, "new_password": None})
    ctx.update(extra or {})
    return render(request, "staff.html", ctx, status=status)


def _admin_actor(admin: accounts.AdminInfo) -> repo.Actor:
    return repo.Actor("admin", admin.email)


async def staff_feed_create(request: web.Request) -> web.StreamResponse:
    admin = request[ADMIN]
    staff_id = _path_id(request, "staff_id")
    form = await request.post()
    payload = {"staff_id": staff_id, "privacy": _form_str(form, "privacy") or "full",
               "label": _form_str(form, "label").strip()}
    try:
        await request.config_dict[DB].write(feeds.create_feed, admin.company_id, payload,
                                            request.config_dict[SECRET], _admin_actor(admin))
    except Invalid as exc:
        if exc.field not in ("privacy", "label"):
            raise
        return await staff_page(request, status=422, extra={
            "form": payload, "errors": {exc.field: exc.message}})
    raise _redirect(f"/admin/staff/{staff_id}?done=feed-created#feeds")


# --- app passwords ------------------------------------------------------------

async def app_password_create(request: web.Request) -> web.Response:
    """The new password is shown in this response only (not a redirect:
    it must never travel in a URL or a cookie)."""
    admin = request[ADMIN]
    staff_id = _path_id(request, "staff_id")
    form = await request.post()
    try:
        _, password = await request.config_dict[DB].write(
            passwords.create, admin.company_id, staff_id, _form_str(form, "label").strip(),
            _admin_actor(admin))
    except Invalid as exc:
        return await staff_page(request, status=422,
                                extra={"errors": {"app_label": exc.message}})
    return await staff_page(request, extra={"new_password": password})


def _app_password(s: Any, admin: accounts.AdminInfo, staff_id: int,
                  password_id: int) -> dict[str, Any]:
    staff = repo.get_staff(s, admin.company_id, staff_id)
    for row in passwords.list_for(s, admin.company_id, staff.id):
        if row.id == password_id and row.revoked_at is None:
            return {"password": passwords.app_password_json(row), "staff_name": staff.name}
    raise NotFound(f"no app password {password_id}")


async def app_password_confirm(request: web.Request) -> web.Response:
    admin = request[ADMIN]
    staff_id, password_id = _path_id(request, "staff_id"), _path_id(request, "pw_id")
    ctx = await request.config_dict[DB].read(_app_password, admin, staff_id, password_id)
    return render(request, "confirm_app_password.html", {**ctx, "staff_id": staff_id})


async def app_password_revoke(request: web.Request) -> web.StreamResponse:
    admin = request[ADMIN]
    staff_id, password_id = _path_id(request, "staff_id"), _path_id(request, "pw_id")
    await request.config_dict[DB].write(passwords.revoke, admin.company_id, staff_id,
                                        password_id, _admin_actor(admin))
    raise _redirect(f"/admin/staff/{staff_id}?done=app-password-revoked#app-passwords")


# --- feed links: rotate / revoke with a confirmation ------------------------

def _back(link: FeedLink) -> str:
    return f"/admin/staff/{link.staff_id}" if link.scope == "staff" else "/admin/groups"


async def feed_confirm(request: web.Request) -> web.Response:
    admin = request[ADMIN]
    feed_id = _path_id(request, "feed_id")
    action = request.match_info["action"]
    secret = request.config_dict[SECRET]
    base_url = request.config_dict[SETTINGS].base_url

    def unit(s: Any) -> dict[str, Any]:
        link = feeds.get_feed(s, admin.company_id, feed_id)
        if link.revoked_at is not None:
            raise Conflict("This feed link is already revoked.")
        return {"link": _feed_view(s, link, secret, base_url), "back": _back(link)}

    ctx = await request.config_dict[DB].read(unit)
    return render(request, "confirm_feed.html", {**ctx, "action": action})


async def feed_action(request: web.Request) -> web.StreamResponse:
    admin = request[ADMIN]
    feed_id = _path_id(request, "feed_id")
    action = request.match_info["action"]
    secret = request.config_dict[SECRET]
    actor = _admin_actor(admin)

    def unit(s: Any) -> str:
        link = feeds.get_feed(s, admin.company_id, feed_id)
        if action == "rotate":
            feeds.rotate_feed(s, admin.company_id, feed_id, secret, actor)
        else:
            feeds.revoke_feed(s, admin.company_id, feed_id, actor)
        return _back(link)

    back = await request.config_dict[DB].write(unit)
    done = "feed-rotated" if action == "rotate" else "feed-revoked"
    raise _redirect(f"{back}?done={done}#feeds")


# --- groups and the company ---------------------------------------------------

async def groups_page(request: web.Request, *, status: int = 200,
                      extra: dict[str, Any] | None = None) -> web.Response:
    admin = request[ADMIN]
    secret = request.config_dict[SECRET]
    base_url = request.config_dict[SETTINGS].base_url

    def unit(s: Any) -> dict[str, Any]:
        links = feeds.list_feeds(s, admin.company_id)
        groups = []
        for g in service.groups(s, admin.company_id):
            groups.append({
                "id": g.id, "name": g.name, "slug": g.slug,
                "members": [m.name for m in g.members],
                "links": [_feed_view(s, link, secret, base_url) for link in links
                          if link.scope == "group" and link.group_id == g.id],
            })
        company_links = [_feed_view(s, link, secret, base_url) for link in links
                         if link.scope == "company"]
        return {"groups": groups, "company_links": company_links}

    ctx = await request.config_dict[DB].read(unit)
    ctx.update({"privacy_levels": PRIVACY, "form": {}, "errors": {}, "error_target": ""})
    ctx.update(extra or {})
    return render(request, "groups.html", ctx, status=status)


async def group_feed_create(request: web.Request) -> web.StreamResponse:
    admin = request[ADMIN]
    form = await request.post()
    target = request.match_info.get("group_id")
    payload: dict[str, Any] = {"privacy": _form_str(form, "privacy") or "full",
                               "label": _form_str(form, "label").strip()}
    if target is None:
        payload["scope"] = "company"
    else:
        payload["scope"] = "group"
        payload["group_id"] = _path_id(request, "group_id")
    try:
        await request.config_dict[DB].write(feeds.create_feed, admin.company_id, payload,
                                            request.config_dict[SECRET], _admin_actor(admin))
    except Invalid as exc:
        if exc.field not in ("privacy", "label"):
            raise
        return await groups_page(request, status=422, extra={
            "form": payload, "errors": {exc.field: exc.message},
            "error_target": target or "company"})
    raise _redirect("/admin/groups?done=feed-created")


# --- invitation ---------------------------------------------------------------

def _invite_context(s: Any, admin: accounts.AdminInfo, staff_id: int, secret: bytes,
                    base_url: str) -> tuple[invite.InviteContext, dict[str, Any]]:
    staff = repo.get_staff(s, admin.company_id, staff_id)
    live = [link for link in feeds.list_feeds(s, admin.company_id) if link.staff_id == staff.id]
    live.sort(key=lambda link: ({"full": 0, "limited": 1, "busy": 2}.get(link.privacy, 3),
                                -link.id))
    urls = feeds.link_json(s, live[0], secret, base_url)["urls"] if live else {}
    ctx = invite.InviteContext(
        company=admin.company_name, staff_name=staff.name, staff_email=staff.email,
        feed_https=urls.get("https"), feed_webcal=urls.get("webcal"),
        feed_google=urls.get("google"), feed_outlook=urls.get("outlook"),
        caldav_url=f"{base_url}/dav/", caldav_username=staff.email,
    )
    return ctx, {"id": staff.id, "name": staff.name, "email": staff.email}


async def invite_form(request: web.Request) -> web.Response:
    admin = request[ADMIN]
    staff_id = _path_id(request, "staff_id")
    ctx, staff = await request.config_dict[DB].read(
        _invite_context, admin, staff_id, request.config_dict[SECRET],
        request.config_dict[SETTINGS].base_url)
    return render(request, "invite.html", {
        "staff": staff, "has_feed": ctx.feed_https is not None,
        "subject": invite.default_subject(ctx), "body": invite.default_text(ctx), "errors": {},
    })


async def invite_send(request: web.Request) -> web.StreamResponse:
    admin = request[ADMIN]
    staff_id = _path_id(request, "staff_id")
    settings = request.config_dict[SETTINGS]
    db = request.config_dict[DB]
    form = await request.post()
    ctx, staff = await db.read(_invite_context, admin, staff_id, request.config_dict[SECRET],
                               settings.base_url)
    subject_raw, body_raw = _form_str(form, "subject"), _form_str(form, "body")
    page = {"staff": staff, "has_feed": ctx.feed_https is not None,
            "subject": subject_raw, "body": body_raw}
    try:
        subject, body = invite.check(subject_raw, body_raw)
    except Invalid as exc:
        return render(request, "invite.html", {**page, "errors": {exc.field: exc.message}},
                      status=422)
    msg = invite.build_message(settings.smtp.from_address, staff["name"], staff["email"],
                               subject, body)
    try:
        await asyncio.to_thread(mail.send_message_sync, settings.smtp, msg)
    except mail.EmailError as exc:
        log.warning("invitation to staff %s not sent: %s", staff_id, exc)
        return render(request, "invite.html", {**page, "errors": {
            "send": f"The email was not sent ({exc}). Check [smtp] in the configuration."}},
            status=502)
    await db.write(service.log_invitation, admin.company_id, staff_id, admin.email, subject)
    raise _redirect(f"/admin/staff/{staff_id}?done=invited")


# --- recent changes -----------------------------------------------------------

async def changes_page(request: web.Request) -> web.Response:
    admin = request[ADMIN]
    q = request.query
    staff_id = _int_param(q.get("staff"), "staff")
    source = q.get("source") or None
    before = _int_param(q.get("before"), "before")

    def unit(s: Any) -> tuple[service.ChangesPage, list[service.StaffRow]]:
        page = service.recent_changes(s, admin.company_id, staff_id=staff_id, source=source,
                                      before=before, timezone=admin.company_timezone)
        return page, service.staff_rows(s, admin.company_id)

    page, people = await request.config_dict[DB].read(unit)
    older = None
    if page.older is not None:
        params = {k: v for k, v in (("staff", q.get("staff", "")), ("source", source or ""))
                  if v}
        older = "/admin/changes?" + urllib.parse.urlencode({**params, "before": page.older})
    return render(request, "changes.html", {
        "entries": page.entries, "people": people, "sources": SOURCE_LABELS,
        "staff_id": staff_id, "source": source, "older": older,
    })


# --- the sub-application ------------------------------------------------------

def console_app() -> web.Application:
    """The console, to mount with `app.add_subapp("/admin", console_app())`;
    it reads DB, SETTINGS and SECRET from the parent application."""
    app = web.Application(middlewares=[security_headers, html_errors, guard])
    aiohttp_jinja2.setup(
        app, loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    r = app.router
    r.add_get("", home)  # /admin
    r.add_get("/", home)
    r.add_get("/login", login_form)
    r.add_post("/login", login)
    r.add_post("/logout", logout)
    r.add_get("/staff", staff_list)
    r.add_get("/staff/{staff_id}", staff_page)
    r.add_post("/staff/{staff_id}/feeds", staff_feed_create)
    r.add_post("/staff/{staff_id}/app-passwords", app_password_create)
    r.add_get("/staff/{staff_id}/app-passwords/{pw_id}/revoke", app_password_confirm)
    r.add_post("/staff/{staff_id}/app-passwords/{pw_id}/revoke", app_password_revoke)
    r.add_get("/staff/{staff_id}/invite", invite_form)
    r.add_post("/staff/{staff_id}/invite", invite_send)
    r.add_get("/feeds/{feed_id}/{action:rotate|revoke}", feed_confirm)
    r.add_post("/feeds/{feed_id}/{action:rotate|revoke}", feed_action)
    r.add_get("/groups", groups_page)
    r.add_post("/groups/{group_id}/feeds", group_feed_create)
    r.add_post("/company/feeds", group_feed_create)
    r.add_get("/changes", changes_page)
    r.add_static("/static", HERE / "static")
    return app
