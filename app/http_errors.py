"""FastAPI exception handlers: every error leaves the gateway in OpenAI's shape and is counted."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import GatewayError, InvalidRequestError, MethodNotAllowedError, NotFoundError, find_gateway_error
from app.observability import metrics

logger = logging.getLogger("ray.serve")


def error_response(err: GatewayError, path: str = "-") -> JSONResponse:
    metrics.REQUESTS.labels(path, "-", "-", str(err.status_code)).inc()
    metrics.ERRORS.labels(path, "-", "-", str(err.status_code), err.error_type, "").inc()
    return JSONResponse(err.to_dict(), status_code=err.status_code, headers=err.headers)


async def _gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
    return error_response(exc, request.url.path)


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(InvalidRequestError(str(exc.errors()[0].get("msg", "invalid request"))))


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 405:
        return error_response(MethodNotAllowedError("Method not allowed for this endpoint."))
    if exc.status_code == 404:
        return error_response(NotFoundError("Unknown endpoint. See /v1/models, /v1/chat/completions."))
    err = GatewayError(str(exc.detail))
    err.status_code = exc.status_code
    return error_response(err)


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    err = find_gateway_error(exc)
    if err is None:
        logger.exception("unexpected error: %s", type(exc).__name__)
        err = GatewayError("The gateway hit an internal error; the request was not completed.")
    return error_response(err)


def install_error_handlers(api: FastAPI) -> None:
    api.add_exception_handler(GatewayError, _gateway_error)
    api.add_exception_handler(RequestValidationError, _validation_error)
    api.add_exception_handler(StarletteHTTPException, _http_error)
    api.add_exception_handler(Exception, _unexpected)
