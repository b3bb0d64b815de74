"""Who may call what: bearer tokens with roles, checked by a server interceptor.

The configuration holds each token only as the SHA-256 of its text, with a name and its
roles (``tokens:``, see :class:`gate.config.TokenEntry`). A call presents the token in
its ``authorization: Bearer <token>`` metadata; the server hashes it and compares the
hash with every configured one using :func:`hmac.compare_digest`.

- no, several or malformed ``authorization`` entries, or an unknown token: UNAUTHENTICATED;
- a known token without the role the method needs (:data:`METHOD_ROLES`): PERMISSION_DENIED;
- the health service and server reflection stay open: probes and tooling carry no token.

``submit`` may upload, evaluate, read the record (waivers included) and the registry,
validate policies and replay one; ``admin`` may do all that, ``Reload``, and grant and
revoke waivers (``Waive``, ``RevokeWaiver``). A GateService method missing from the table is
refused to every token, so a new method is closed until it is given a role.

With no tokens configured every call is allowed: only for a server on loopback or the demo.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

import grpc

from gate._proto.gate.v1 import gate_pb2 as pb
from gate.config import Role, TokenEntry
from gate.tokens import token_sha256

log = logging.getLogger(__name__)

SERVICE_PREFIX = f"/{pb.DESCRIPTOR.services_by_name['GateService'].full_name}/"

#: The role each GateService method needs.
METHOD_ROLES: dict[str, Role] = {
    SERVICE_PREFIX + "UploadModel": "submit",
    SERVICE_PREFIX + "Evaluate": "submit",
    SERVICE_PREFIX + "GetVerdict": "submit",
    SERVICE_PREFIX + "ListVerdicts": "submit",
    SERVICE_PREFIX + "ListDatasets": "submit",
    SERVICE_PREFIX + "ListPolicies": "submit",
    SERVICE_PREFIX + "ValidatePolicy": "submit",
    SERVICE_PREFIX + "GetPredictions": "submit",
    SERVICE_PREFIX + "ReplayPolicy": "submit",
    SERVICE_PREFIX + "ListWaivers": "submit",
    SERVICE_PREFIX + "Reload": "admin",
    SERVICE_PREFIX + "Waive": "admin",
    SERVICE_PREFIX + "RevokeWaiver": "admin",
}

#: What each role may do: admin includes submit, and both include read (the web dashboard).
GRANTS: dict[Role, frozenset[Role]] = {
    "read": frozenset({"read"}),
    "submit": frozenset({"read", "submit"}),
    "admin": frozenset({"read", "submit", "admin"}),
}

#: Services that answer without a token.
OPEN_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


def bearer_token(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    """The token of the call's one ``authorization: Bearer <token>`` entry, or None."""
    values = [value for key, value in metadata or () if key == "authorization"]
    if len(values) != 1 or not isinstance(values[0], str):
        return None
    scheme, _, token = values[0].strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or any(c.isspace() for c in token):
        return None
    return token


def token_entry(tokens: Sequence[TokenEntry], token: str) -> TokenEntry | None:
    """The configured entry whose hash matches the token's, or None."""
    digest = token_sha256(token).encode("ascii")
    found = None
    for entry in tokens:
        # no early exit: the time taken does not tell which entry matched
        if hmac.compare_digest(digest, entry.sha256.encode("ascii")):
            found = entry
    return found


def caller_name(tokens: Sequence[TokenEntry], metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
    """Who made a call, for the record: its token's name (the interceptor has already
    refused calls without a valid one), or ``anonymous`` on a server without tokens."""
    token = bearer_token(metadata)
    entry = None if token is None else token_entry(tokens, token)
    return entry.name if entry is not None else "anonymous"


class AuthInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg,misc,unused-ignore]
    """Authenticates each call by its bearer token and authorises it by role (see the
    module doc). Registered before the error interceptor, so it is the outermost."""

    def __init__(self, tokens: Sequence[TokenEntry]) -> None:
        self._tokens = tuple(tokens)

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def identify(self, token: str) -> TokenEntry | None:
        """The configured entry whose hash matches the token's, or None."""
        return token_entry(self._tokens, token)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method: str = handler_call_details.method
        handler = continuation(handler_call_details)
        if handler is None or not self._tokens or method.startswith(OPEN_PREFIXES):
            return handler
        token = bearer_token(handler_call_details.invocation_metadata)
        if token is None:
            return _refusal(
                handler,
                grpc.StatusCode.UNAUTHENTICATED,
                "this server requires a bearer token: send the metadata 'authorization: Bearer <token>'",
                method,
            )
        entry = self.identify(token)
        if entry is None:
            return _refusal(handler, grpc.StatusCode.UNAUTHENTICATED, "the bearer token is not valid here", method)
        needed = METHOD_ROLES.get(method)
        granted = frozenset().union(*(GRANTS[role] for role in entry.roles))
        if needed is None or needed not in granted:
            what = f"the '{needed}' role" if needed else "a role no token holds"
            return _refusal(
                handler,
                grpc.StatusCode.PERMISSION_DENIED,
                f"token '{entry.name}' may not call {method.rpartition('/')[2]}: that needs {what}",
                method,
                token_name=entry.name,
            )
        log.debug("%s authorised for token '%s'", method, entry.name)
        if method == SERVICE_PREFIX + "Evaluate" and handler.unary_stream:
            return _with_evaluation_caller(handler, entry.name)
        return handler


def _refusal(
    handler: grpc.RpcMethodHandler[Any, Any],
    code: grpc.StatusCode,
    message: str,
    method: str,
    *,
    token_name: str | None = None,
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same shape as ``handler`` that ends the call with ``code``,
    without reading a request or running the method."""

    def refuse(request: Any, context: grpc.ServicerContext) -> NoReturn:
        if token_name is None:
            log.info("%s refused (%s) from %s", method, code.name, context.peer())
        else:
            log.warning("%s refused (%s) for token '%s' from %s", method, code.name, token_name, context.peer())
        context.abort(code, message)

    serializers = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(refuse, **serializers)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(refuse, **serializers)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(refuse, **serializers)
    return grpc.stream_stream_rpc_method_handler(refuse, **serializers)


def _with_evaluation_caller(
    handler: grpc.RpcMethodHandler[Any, Any], token_name: str
) -> grpc.RpcMethodHandler[Any, Any]:
    """Evaluate, logging which token asked for the evaluation once its id is known: the
    labels stay as the client sent them, and the log ties the caller to the record."""
    behaviour = handler.unary_stream
    assert behaviour is not None

    def evaluate(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        events = behaviour(request, context)
        try:
            for event in events:
                if event.WhichOneof("event") == "accepted":
                    evaluation_id = event.accepted.evaluation_id
                    log.info(
                        "evaluation %s requested by token '%s'",
                        evaluation_id,
                        token_name,
                        extra={"evaluation_id": evaluation_id},
                    )
                yield event
        finally:
            # a call that ends early closes this generator; close the method's too, at
            # once, so its own clean-up (recording the evaluation) runs as it would unwrapped
            close = getattr(events, "close", None)
            if close is not None:
                close()

    return grpc.unary_stream_rpc_method_handler(
        evaluate,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
