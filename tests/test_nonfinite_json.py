"""Non-finite numbers in a JSON body (`NaN`, `Infinity`, `-Infinity`, and `1e999`, which Python reads as inf) are a
422 before any route runs, without a login, and the answer does not echo them; the same requests with finite
numbers still work (the body reaches the route unchanged)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from inspector.api.json_strict import has_non_finite
from tests.web_helpers import EDITOR, dashboard

BAD_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e999"]
ECHOES = ("nan", "infinity", "1e999", "inf")


def refused(r: httpx.Response) -> bool:
    """A 422 that names the body and quotes none of the bad value."""
    text = r.text.lower()
    return (
        r.status_code == 422
        and r.json()["detail"][0]["loc"] == ["body"]
        and not any(e in text.replace("non-finite", "") for e in ECHOES)
    )


def test_has_non_finite() -> None:
    for bad in BAD_NUMBERS:
        assert has_non_finite(f'{{"a": [1, {{"b": {bad}}}]}}'.encode())
    assert has_non_finite(b'{"a": 1' + b"0" * 400 + b".5}")  # a long literal overflows a float too
    assert not has_non_finite(b'{"a": 1.5e300, "b": -2, "c": "NaN"}')  # the string "NaN" is fine
    assert not has_non_finite(b"{not json")  # FastAPI's own 422 handles that
    assert not has_non_finite(b"\xff\xfe")


@pytest.mark.parametrize("bad", BAD_NUMBERS)
def test_nonfinite_json_is_422_before_login(tmp_path: Path, bad: str) -> None:
    with (
        dashboard(tmp_path, parts=10, login_to_view=True) as d,
        httpx.Client(base_url=d.base_url, timeout=30) as c,
    ):
        json_type = {"Content-Type": "application/json"}
        bodies = {
            ("POST", "/api/login"): f'{{"username": "qa", "password": {bad}}}',
            ("POST", "/api/thresholds/preview"): f'{{"thresholds": {{"default": {{"min_confidence": {bad}}}}}}}',
            ("PUT", "/api/thresholds"): (
                f'{{"version": 1, "thresholds": {{"default": {{"min_confidence": 0.5, "max_area": {bad}}}}}}}'
            ),
        }
        for (method, path), body in bodies.items():
            r = c.request(method, path, content=body, headers=json_type)
            assert refused(r), (method, path, r.status_code, r.text)
            r = c.request(method, path, content=body)  # no content type: FastAPI parses it as JSON too
            assert refused(r), (method, path, r.status_code, r.text)
            # Not a login check: the same request with finite numbers gets past the guard to the route's own rules.
            finite = c.request(method, path, content=body.replace(bad, "0.5"), headers=json_type)
            assert finite.status_code in {401, 422} and "non-finite" not in finite.text

        # A non-JSON body is not the guard's business; the route answers it as before.
        r = c.post("/api/login", content=b"username=qa", headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 422 and "non-finite" not in r.text
        # Logged in, finite numbers pass through unchanged and a non-finite one is still refused.
        r = c.post("/api/login", json={"username": EDITOR[0], "password": EDITOR[1]})
        assert r.status_code == 200, r.text
        ok = c.post("/api/thresholds/preview", json={"thresholds": {"default": {"min_confidence": 0.99}}, "parts": 5})
        assert ok.status_code == 200 and ok.json()["parts"] == 5
        r = c.post("/api/thresholds/preview", content=bodies[("POST", "/api/thresholds/preview")], headers=json_type)
        assert refused(r)
        assert d.holder.get().version == 1  # nothing was installed
