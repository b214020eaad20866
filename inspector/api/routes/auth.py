"""Login routes: log in (token and session cookie), log out, and who is logged in."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response

from inspector.api.deps import Deps
from inspector.api.json_strict import strict
from inspector.api.schemas import E400, E401, LoginOut, LoginRequest, MeOut
from inspector.api.security import SESSION_COOKIE, AuthDep, SessionDep, TokenDep

__all__ = ["router"]

router = APIRouter()

StrictLogin = strict(LoginRequest)


@router.post("/api/login", response_model=LoginOut, tags=["auth"], responses={**E400, **E401})
def login(_: StrictLogin, body: LoginRequest, response: Response, auth: AuthDep, deps: Deps) -> LoginOut:
    """Check the credentials; returns a token and sets it as an HttpOnly, SameSite=Strict cookie."""
    session = auth.login(body.username, body.password)  # PBKDF2: a sync route, so it runs in the thread pool
    if session is None:
        raise HTTPException(401, "wrong user name or password", headers={"WWW-Authenticate": "Bearer"})
    response.set_cookie(
        SESSION_COOKIE,
        session.token,
        max_age=int(deps.session_ttl_s),
        httponly=True,
        samesite="strict",
        secure=deps.config.secure_cookies,
        path="/",
    )
    return LoginOut(token=session.token, username=session.username, role=session.role, expires_in_s=deps.session_ttl_s)


@router.post("/api/logout", response_model=MeOut, tags=["auth"])
def logout(response: Response, token: TokenDep, auth: AuthDep, deps: Deps) -> MeOut:
    """End the session (token or cookie) and clear the cookie."""
    auth.logout(token)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=deps.config.secure_cookies, samesite="strict")
    return MeOut(authenticated=False, login_to_view=deps.config.login_to_view)


@router.get("/api/me", response_model=MeOut, tags=["auth"])
def me(session: SessionDep, deps: Deps) -> MeOut:
    """Who is logged in (if anyone) and whether viewing needs a login."""
    if session is None:
        return MeOut(authenticated=False, login_to_view=deps.config.login_to_view)
    return MeOut(
        authenticated=True,
        username=session.username,
        role=session.role,
        can_edit=session.role == "editor",
        login_to_view=deps.config.login_to_view,
    )
