"""The upload baseline: a bare grpcio server that receives a client stream of the same
ModelChunk messages and does what an upload must do at its end and nothing more: it
SHA-256s the bytes as they come, writes them to a file, checks the hash the last chunk
declares and answers it. Prints its port, then serves until killed.

    python benchmarks/sink_server.py DIRECTORY

The client side of the baseline (benchmarks/bench.py, section e) hashes while it
streams and declares the hash in the last chunk, as gate's client does. What gate adds
beyond this is its own: admission, authentication, size limits, the content-addressed
store (a temporary file renamed into place), the audit of the upload.
"""

import hashlib
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

import grpc

from gate._proto.gate.v1 import gate_pb2 as pb


def _sink(directory: str):  # type: ignore[no-untyped-def]
    def receive(requests, context):  # type: ignore[no-untyped-def]
        digest = hashlib.sha256()
        declared, size = "", 0
        with tempfile.NamedTemporaryFile(dir=directory, delete=True) as f:
            for chunk in requests:
                if chunk.data:
                    digest.update(chunk.data)
                    f.write(chunk.data)
                    size += len(chunk.data)
                declared = chunk.sha256 or declared
            f.flush()
        if declared != digest.hexdigest():
            context.abort(grpc.StatusCode.DATA_LOSS, "hash mismatch")
        return pb.ModelRef(sha256=digest.hexdigest(), size=size)

    return receive


def main() -> None:
    directory = sys.argv[1] if len(sys.argv) > 1 else tempfile.gettempdir()
    server = grpc.server(ThreadPoolExecutor(max_workers=4), options=[("grpc.max_receive_message_length", 8 << 20)])
    handler = grpc.method_handlers_generic_handler(
        "bench.Sink",
        {
            "Upload": grpc.stream_unary_rpc_method_handler(
                _sink(directory),
                request_deserializer=pb.ModelChunk.FromString,
                response_serializer=pb.ModelRef.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
