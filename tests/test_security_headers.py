"""Security headers and cookies of the dashboard: `X-Content-Type-Options: nosniff` and `X-Frame-Options: DENY` on
every answer (page, API, errors, the event stream), a Content-Security-Policy that allows only the page's own files
and no framing, no inline script or style in the page (the CSP would block them: `test_web_e2e.py` runs the page in
Chromium under it), and the `dashboard.secure_cookies` setting."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from inspector.api import create_app
from inspector.api.app import WEB_DIR
from inspector.config import DashboardConfig
from tests.web_helpers import EDITOR, dashboard, make_deps, serve


def directives(csp: str) -> dict[str, list[str]]:
    return {d.split()[0]: d.split()[1:] for d in (p.strip() for p in csp.split(";")) if d}


def test_every_answer_has_the_headers(tmp_path: Path) -> None:
    with dashboard(tmp_path, parts=5) as d, httpx.Client(base_url=d.base_url, timeout=30) as c:
        answers = {
            "page": c.get("/"),
            "static": c.get("/static/app.js"),
            "stats": c.get("/api/stats"),
            "health": c.get("/api/health"),
            "metrics": c.get("/metrics"),
            "not found": c.get("/api/nope"),
            "405": c.delete("/api/stats"),
            "401": c.put("/api/thresholds", json={"version": 1, "thresholds": {}}),
            "422 non-finite": c.post("/api/login", content=b'{"username": "a", "password": NaN}'),
            "docs": c.get("/docs"),
        }
        with c.stream("GET", "/api/events") as events:
            answers["events"] = events
        for what, r in answers.items():
            assert r.headers.get("x-content-type-options") == "nosniff", what
            assert r.headers.get("x-frame-options") == "DENY", what
            assert directives(r.headers["content-security-policy"])["frame-ancestors"] == ["'none'"], what
        page = directives(answers["page"].headers["content-security-policy"])
        for kind in ("default-src", "script-src", "style-src", "connect-src"):
            assert page[kind] == ["'self'"], kind  # no 'unsafe-inline', no CDN
        assert page["object-src"] == ["'none'"]
        # Swagger UI comes from a CDN with an inline script: its page is only kept out of frames.
        assert directives(answers["docs"].headers["content-security-policy"]) == {"frame-ancestors": ["'none'"]}


def test_the_page_has_no_inline_script_or_style() -> None:
    html = (WEB_DIR / "index.html").read_text()
    scripts = re.findall(r"<script\b[^>]*>", html, re.IGNORECASE)
    assert scripts and all("src=" in tag for tag in scripts)
    assert not re.search(r"<style\b|\sstyle\s*=|\son[a-z]+\s*=|javascript:", html, re.IGNORECASE)
    assert not re.search(r"https?://", html)
    script = (WEB_DIR / "app.js").read_text()
    # Setting `node.style.x` is allowed under the CSP; a style attribute, eval and HTML strings are not used.
    assert not re.search(r"setAttribute\(\s*['\"]style|innerHTML|outerHTML|eval\(|new Function|cssText", script)


def login_cookie(base_url: str) -> str:
    with httpx.Client(base_url=base_url, timeout=30) as c:
        r = c.post("/api/login", json={"username": EDITOR[0], "password": EDITOR[1]})
        assert r.status_code == 200, r.text
        return r.headers["set-cookie"]


def test_secure_cookies_setting(tmp_path: Path) -> None:
    for secure in (False, True):
        deps, _ = make_deps(tmp_path / str(secure))
        deps.config = DashboardConfig(secure_cookies=secure)
        try:
            with serve(create_app(deps)) as base_url:
                cookie = [p.strip().lower() for p in login_cookie(base_url).split(";")]
                assert cookie[0].startswith("inspector_session=")
                assert "httponly" in cookie and "samesite=strict" in cookie
                assert ("secure" in cookie) is secure
        finally:
            deps.store.close()
    assert DashboardConfig().secure_cookies is False
