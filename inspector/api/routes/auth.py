"""Login routes: log in (token and session cookie; limited by the login guard), log out, who is logged in, and the
editors' view of locked accounts and blocked addresses, with the lift."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, Field

from inspector.api.deps import Deps
from inspector.api.json_strict import strict
from inspector.api.login_limits import Kind, LockInfo, LoginRefused
from inspector.api.schemas import E400, E401, E403, E404, ErrorOut, LoginOut, LoginRequest, MeOut
from inspector.api.security import SESSION_COOKIE, AuthDep, EditorDep, GuardDep, SessionDep, TokenDep

__all__ = ["EDITOR_ROUTES", "LockOut", "LocksOut", "router"]

router = APIRouter()

# Routes that need a session (the others take one when there is one): the OpenAPI document says so.
EDITOR_ROUTES = {
    ("get", "/api/login-locks"),
    ("delete", "/api/login-locks/accounts/{username}"),
    ("delete", "/api/login-locks/addresses/{address}"),
}
E429 = {
    429: {"model": ErrorOut, "description": "too many failed logins (account or address): wait `Retry-After` s"},
    503: {"model": ErrorOut, "description": "the password checker is busy: try again after `Retry-After` s"},
}

StrictLogin = strict(LoginRequest)


class LockOut(BaseModel):
    kind: Literal["account", "address"]
    name: str = Field(description="the user name tried, or the client address")
    failures: int = Field(description="failed logins in the window")
    locked: bool = Field(description="locked account or blocked address; false: in back-off only")
    retry_after_s: float = Field(description="seconds until the next attempt is checked (0: now)")


class LocksOut(BaseModel):
    items: list[LockOut] = Field(description="accounts and addresses with recent failures, locked ones first")


def _lock_out(info: LockInfo) -> LockOut:
    return LockOut(
        kind=info.kind,
        name=info.name,
        failures=info.failures,
        locked=info.locked,
        retry_after_s=round(info.retry_after_s, 3),
    )


@router.post("/api/login", response_model=LoginOut, tags=["auth"], responses={**E400, **E401, **E429})
async def login(
    _: StrictLogin,
    body: LoginRequest,
    request: Request,
    response: Response,
    auth: AuthDep,
    guard: GuardDep,
    deps: Deps,
) -> LoginOut:
    """Check the credentials; returns a token and sets it as an HttpOnly, SameSite=Strict cookie. Failed logins
    are limited per account and per client address (429 with Retry-After; see `dashboard.logins`)."""
    address = request.client.host if request.client else "unknown"
    try:
        session = await guard.login(auth, body.username, body.password, address)
    except LoginRefused as refused:
        raise HTTPException(refused.status, refused.detail, headers={"Retry-After": str(refused.retry_after)}) from None
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


@router.get("/api/login-locks", response_model=LocksOut, tags=["auth"], responses={**E401, **E403})
def get_locks(_: EditorDep, guard: GuardDep) -> LocksOut:
    """Editors: accounts and client addresses with failed logins in their window, locked or in back-off."""
    return LocksOut(items=[_lock_out(info) for info in guard.limiter.locks()])


Comment = Annotated[str, Query(max_length=500, description="why (goes into the audit log)")]


def _lift(guard: GuardDep, session: EditorDep, kind: Kind, name: str, comment: str) -> LockOut:
    info = guard.lift(kind, name, by=session.username, comment=comment)
    if info is None:
        raise HTTPException(404, f"no failed logins recorded for {kind} {name!r}")
    return _lock_out(info)


@router.delete(
    "/api/login-locks/accounts/{username}",
    response_model=LockOut,
    tags=["auth"],
    responses={**E401, **E403, **E404},
)
def unlock_account(
    username: Annotated[str, Path(min_length=1, max_length=100)],
    session: EditorDep,
    guard: GuardDep,
    comment: Comment = "",
) -> LockOut:
    """Editors: lift an account's lock and back-off (audited as `login.unlock`); what was lifted."""
    return _lift(guard, session, "account", username, comment)


@router.delete(
    "/api/login-locks/addresses/{address}",
    response_model=LockOut,
    tags=["auth"],
    responses={**E401, **E403, **E404},
)
def unblock_address(
    address: Annotated[str, Path(min_length=1, max_length=100)],
    session: EditorDep,
    guard: GuardDep,
    comment: Comment = "",
) -> LockOut:
    """Editors: lift a client address's block (audited as `login.unlock`); what was lifted."""
    return _lift(guard, session, "address", address, comment)
