"""problem+json errors (RFC 9457) as typed exceptions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Type


@dataclass(frozen=True)
class FieldError:
    """One entry of a problem's ``errors`` list: where (``path``) and what is wrong."""

    path: str
    message: str


class ApiError(Exception):
    """An error answer from the server. ``errors`` lists field-level problems, when given."""

    def __init__(self, status: int, code: str, detail: str, request_id: Optional[str] = None, errors: Optional[List[FieldError]] = None, body: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(f"{status} {code}: {detail}" + (f" ({'; '.join(f'{e.path}: {e.message}' for e in errors)})" if errors else ""))
        self.status = status
        self.code = code
        self.detail = detail
        self.request_id = request_id
        self.errors: List[FieldError] = errors or []
        self.body = body or {}


class InvalidRequestError(ApiError):
    """400 ``invalid_request`` (also 406 ``not_acceptable`` and 415 ``unsupported_media_type``)."""


class UnauthenticatedError(ApiError):
    """401: no key, or an unknown, revoked or expired one."""


class ForbiddenError(ApiError):
    """403: the key lacks the scope."""


class NotFoundError(ApiError):
    """404: unknown feature(s)."""


class ConflictError(ApiError):
    """409: a definition conflicts with the registered one."""


class RateLimitedError(ApiError):
    """429: over the key's rate limit; ``retry_after`` seconds."""

    retry_after: Optional[float] = None


class UnavailableError(ApiError):
    """503: a store is down or the server is shedding load."""

    retry_after: Optional[float] = None


_BY_CODE: Dict[str, Type[ApiError]] = {
    "invalid_request": InvalidRequestError,
    "not_acceptable": InvalidRequestError,
    "unsupported_media_type": InvalidRequestError,
    "payload_too_large": InvalidRequestError,
    "unauthenticated": UnauthenticatedError,
    "forbidden": ForbiddenError,
    "not_found": NotFoundError,
    "conflict": ConflictError,
    "rate_limited": RateLimitedError,
    "unavailable": UnavailableError,
}


def error_from_problem(status: int, body: Any, retry_after: Optional[str] = None) -> ApiError:
    """The typed exception for a problem body (a non-problem body still gives an ApiError)."""
    if not isinstance(body, dict):
        return ApiError(status, "internal" if status >= 500 else "invalid_request", str(body)[:500])
    code = str(body.get("code", "internal"))
    errors = [FieldError(str(e.get("path", "")), str(e.get("message", ""))) for e in body.get("errors", []) if isinstance(e, dict)]
    cls = _BY_CODE.get(code, ApiError)
    err = cls(status, code, str(body.get("detail", "")), body.get("request_id"), errors, body)
    if retry_after is not None and isinstance(err, (RateLimitedError, UnavailableError)):
        try:
            err.retry_after = float(retry_after)
        except ValueError:
            pass
    return err
