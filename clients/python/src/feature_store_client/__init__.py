"""Python client for feature-store (see the project README, section "Python client")."""

from .client import FeatureStore
from .errors import (
    ApiError,
    ConflictError,
    FieldError,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    RateLimitedError,
    UnauthenticatedError,
    UnavailableError,
)

__all__ = [
    "FeatureStore",
    "ApiError",
    "FieldError",
    "InvalidRequestError",
    "UnauthenticatedError",
    "ForbiddenError",
    "NotFoundError",
    "ConflictError",
    "RateLimitedError",
    "UnavailableError",
]
