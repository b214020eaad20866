"""Who is asking: the dashboard's accounts, sessions from a bearer token or the session cookie, the login guard
(failed-login limits, the password hasher), and the viewer / editor role checks as FastAPI dependencies."""

from __future__ import annotations

import sys
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry

from inspector.api.deps import AppDeps, Deps
from inspector.api.login_guard import LoginGuard
from inspector.auth import Authenticator, Session, bootstrap_users
from inspector.prometheus import LoginCollector

__all__ = [
    "SESSION_COOKIE",
    "AuthDep",
    "EditorDep",
    "GuardDep",
    "SessionDep",
    "TokenDep",
    "app_authenticator",
    "authenticator",
    "current_session",
    "editor",
    "login_guard",
    "viewer",
]

SESSION_COOKIE = "inspector_session"

_bearer = HTTPBearer(auto_error=False, description="token from POST /api/login")
_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="set by POST /api/login")


def authenticator(deps: AppDeps) -> Authenticator:
    """The app's accounts: `deps.users`, else the config's, else a first-start editor account (printed once)."""
    users = dict(deps.users) if deps.users is not None else dict(deps.config.users)
    if not users:
        users, password = bootstrap_users({}, deps.store)
        if password is not None:
            # Printed exactly once: later starts find the account in the store (see bootstrap_users).
            print(f"inspector dashboard: created user 'admin' (editor), password: {password}", file=sys.stderr)
            deps.store.audit_event(user="system", action="user.create", comment="first-start editor account 'admin'")
    return Authenticator(users, session_ttl_s=deps.session_ttl_s)


def login_guard(deps: AppDeps, metrics: CollectorRegistry) -> LoginGuard:
    """The app's login guard, under the config's `logins` limits, auditing in the store and counted in `metrics`."""
    guard = LoginGuard(deps.config.logins, audit=deps.store.audit_event)
    metrics.register(LoginCollector(guard.stats))
    return guard


async def app_login_guard(request: Request) -> LoginGuard:
    """The login guard of the app (made by `login_guard` when the app was built)."""
    return request.app.state.login_guard


GuardDep = Annotated[LoginGuard, Depends(app_login_guard)]


def _token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    cookie_token: Annotated[str | None, Depends(_cookie)],
) -> str | None:
    """The bearer token, else the session cookie; None when the request has neither."""
    return credentials.credentials if credentials is not None else cookie_token


TokenDep = Annotated[str | None, Depends(_token)]


async def app_authenticator(request: Request) -> Authenticator:
    """The accounts and sessions of the app (made by `authenticator` when the app was built)."""
    return request.app.state.auth


AuthDep = Annotated[Authenticator, Depends(app_authenticator)]


def current_session(auth: AuthDep, token: TokenDep) -> Session | None:
    """The session of the bearer token, else of the cookie; None when neither is a live session."""
    return auth.session(token)


SessionDep = Annotated[Session | None, Depends(current_session)]


def viewer(deps: Deps, session: SessionDep) -> Session | None:
    """Viewing is open unless the config asks for a login."""
    if deps.config.login_to_view and session is None:
        raise HTTPException(401, "log in to view", headers={"WWW-Authenticate": "Bearer"})
    return session


def editor(session: SessionDep) -> Session:
    """401 without a session, 403 for a viewer."""
    if session is None:
        raise HTTPException(401, "log in as an editor to change thresholds", headers={"WWW-Authenticate": "Bearer"})
    if session.role != "editor":
        raise HTTPException(403, f"user {session.username!r} is a viewer; thresholds need the editor role")
    return session


EditorDep = Annotated[Session, Depends(editor)]
