"""The gRPC service: ``create_server()`` (app), the servicer, the error interceptor,
admission control and message conversions."""

from gate.server.app import GateServer, create_server

__all__ = ["GateServer", "create_server"]
