"""The one place where gate's error taxonomy becomes gRPC status codes.

User errors are INVALID_ARGUMENT, with NOT_FOUND, RESOURCE_EXHAUSTED and CANCELLED for
their specific kinds; an execution provider that cannot run is FAILED_PRECONDITION; a
server still loading is UNAVAILABLE; an upload that stalls is DEADLINE_EXCEEDED. Anything
unexpected is INTERNAL with a generic message, and its traceback goes to the log.

A status message travels in the call's trailing metadata, which gRPC limits (8 KiB by
default); an error that echoes a long name would exceed it, and the caller would get
RESOURCE_EXHAUSTED instead of the status meant for it. So every message sent is cut to
:data:`MAX_STATUS_MESSAGE_BYTES` as encoded on the wire (:func:`fit_status_message`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from gate.errors import (
    CancelledError,
    EvaluationTimeoutError,
    GateError,
    NotFoundError,
    NotReadyError,
    OverloadedError,
    ProviderError,
    UserError,
)
from gate.server.uploads import UploadTimeoutError

log = logging.getLogger(__name__)

# most specific first
STATUS_CODES: tuple[tuple[type[GateError], grpc.StatusCode], ...] = (
    (UploadTimeoutError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (OverloadedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (CancelledError, grpc.StatusCode.CANCELLED),
    (UserError, grpc.StatusCode.INVALID_ARGUMENT),
    (ProviderError, grpc.StatusCode.FAILED_PRECONDITION),
    (NotReadyError, grpc.StatusCode.UNAVAILABLE),
    (EvaluationTimeoutError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (GateError, grpc.StatusCode.INTERNAL),
)


#: The most a status message may take on the wire (percent-encoded UTF-8).
MAX_STATUS_MESSAGE_BYTES = 2048

_CUT = " … (cut to fit a status message; {} characters in all)"


def _wire_bytes(text: str) -> int:
    """The size of ``text`` as grpc-message: printable ASCII but '%' as is, any other
    byte of its UTF-8 as %XX."""
    return sum(1 if 0x20 <= b <= 0x7E and b != 0x25 else 3 for b in text.encode("utf-8"))


def fit_status_message(message: str, limit: int = MAX_STATUS_MESSAGE_BYTES) -> str:
    """``message``, or its beginning with a note saying it was cut, within ``limit`` bytes
    on the wire."""
    if _wire_bytes(message) <= limit:
        return message
    suffix = _CUT.format(len(message))
    room = limit - _wire_bytes(suffix)
    kept: list[str] = []
    for char in message:
        room -= _wire_bytes(char)
        if room < 0:
            break
        kept.append(char)
    return "".join(kept) + suffix


def status_for(error: GateError) -> grpc.StatusCode:
    return next(code for cls, code in STATUS_CODES if isinstance(error, cls))


def _abort(context: grpc.ServicerContext, error: BaseException, method: str) -> None:
    if isinstance(error, GateError):
        context.abort(status_for(error), fit_status_message(error.message))
    incident = uuid.uuid4().hex[:12]
    log.error("unexpected error in %s (incident %s)", method, incident, exc_info=error)
    context.abort(grpc.StatusCode.INTERNAL, f"internal error (incident {incident}; see the server log)")


def _guard_unary(fn: Callable[..., Any], method: str) -> Callable[..., Any]:
    def wrapper(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(request, context)
        except Exception as e:  # every failure leaves through _abort with a status code
            if _already_aborted(e, context):
                raise
            _abort(context, e, method)

    return wrapper


def _already_aborted(error: Exception, context: grpc.ServicerContext) -> bool:
    """True when the handler set a status itself (context.abort raises to unwind)."""
    return isinstance(error, grpc.RpcError) or getattr(context, "code", lambda: None)() is not None


def _guard_stream(fn: Callable[..., Iterator[Any]], method: str) -> Callable[..., Iterator[Any]]:
    def wrapper(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from fn(request, context)
        except Exception as e:
            if _already_aborted(e, context):
                raise
            _abort(context, e, method)

    return wrapper


class ErrorInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg,misc,unused-ignore]
    """Wraps every handler so that exceptions become status codes (see the module doc)."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _guard_unary(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _guard_unary(handler.stream_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _guard_stream(handler.unary_stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler
