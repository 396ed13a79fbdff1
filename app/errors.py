"""One error hierarchy for the whole gateway, rendered in OpenAI's error shape.

``{"error": {"message", "type", "param", "code"}}`` with the matching HTTP status.
Messages never contain secrets: callers pass user-facing text only.
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """Base error: carries an HTTP status and the OpenAI error fields."""

    status_code: int = 500
    error_type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = dict(headers or {})

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.error_type, "param": self.param, "code": self.code}}

    def __reduce__(self):  # keep subclasses (and their extra attributes) picklable across Ray boundaries
        return (_rebuild, (type(self), self.message, self.param, self.code, self.headers), dict(self.__dict__))


def _rebuild(cls: type[GatewayError], message: str, param: str | None, code: str | None, headers: dict[str, str]):
    return cls(message, param=param, code=code, headers=headers)


class InvalidRequestError(GatewayError):
    status_code = 400
    error_type = "invalid_request_error"


class ContextLengthError(InvalidRequestError):
    code = "context_length_exceeded"


class ChatTemplateError(InvalidRequestError):
    """The model's chat template refused the messages (app/engines/chat_prompt.py): the request's fault."""

    code = "chat_template_error"


class AuthenticationError(GatewayError):
    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class PermissionDeniedError(GatewayError):
    status_code = 403
    error_type = "permission_error"


class NotFoundError(GatewayError):
    status_code = 404
    error_type = "invalid_request_error"


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"


class ConflictError(GatewayError):
    """The request conflicts with the current state (e.g. deleting a version a label points to)."""

    status_code = 409
    error_type = "invalid_request_error"
    code = "conflict"


class MethodNotAllowedError(GatewayError):
    status_code = 405
    error_type = "invalid_request_error"


class PayloadTooLargeError(GatewayError):
    status_code = 413
    error_type = "invalid_request_error"
    code = "request_too_large"


class UnsupportedMediaTypeError(GatewayError):
    status_code = 415
    error_type = "invalid_request_error"


class RateLimitError(GatewayError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"


class InsufficientQuotaError(GatewayError):
    """A spend budget is used up (429, OpenAI's ``insufficient_quota``); sent with ``x-should-retry: false``."""

    status_code = 429
    error_type = "insufficient_quota"
    code = "insufficient_quota"


class UpstreamError(GatewayError):
    """An upstream (pool or provider) failed; retryable unless ``retryable`` is False."""

    status_code = 502
    error_type = "upstream_error"
    retryable = True
    retry_after: float | None = None


def upstream_error(message: str, *, retryable: bool, retry_after: float | None = None,
                   code: str | None = None) -> UpstreamError:
    err = UpstreamError(message, code=code)
    err.retryable = retryable
    err.retry_after = retry_after
    return err


class ServiceUnavailableError(GatewayError):
    status_code = 503
    error_type = "service_unavailable"
    code = "service_unavailable"


class ContentPolicyError(InvalidRequestError):
    """A guardrail blocked the request; the message names the reason code (never the matched text)."""

    code = "content_policy_violation"

    def __init__(self, message: str, *, reason: str = "", **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.reason = reason


class GuardrailUnavailableError(ServiceUnavailableError):
    """A guardrail scanner errored or timed out and fails closed (retry later)."""

    code = "guardrail_unavailable"

    def __init__(self, message: str, *, retry_after: float = 1.0, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        self.headers.setdefault("Retry-After", str(max(1, round(retry_after))))


def find_gateway_error(exc: BaseException) -> GatewayError | None:
    """Find a GatewayError in ``exc`` or its cause chain (Ray wraps replica exceptions)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, GatewayError):
            return current
        inner = getattr(current, "cause", None)  # ray.exceptions.RayTaskError
        current = inner if isinstance(inner, BaseException) else (current.__cause__ or current.__context__)
    return None
