"""The upload baseline: a bare grpcio server that receives a client stream of the same
ModelChunk messages and only counts the bytes. Prints its port, then serves until killed.

    python benchmarks/sink_server.py
"""

from concurrent.futures import ThreadPoolExecutor

import grpc

from gate._proto.gate.v1 import gate_pb2 as pb


def _sink(requests, context):  # type: ignore[no-untyped-def]
    size = sum(len(chunk.data) for chunk in requests)
    return pb.ModelRef(size=size)


def main() -> None:
    server = grpc.server(ThreadPoolExecutor(max_workers=4), options=[("grpc.max_receive_message_length", 8 << 20)])
    handler = grpc.method_handlers_generic_handler(
        "bench.Sink",
        {
            "Upload": grpc.stream_unary_rpc_method_handler(
                _sink, request_deserializer=pb.ModelChunk.FromString, response_serializer=pb.ModelRef.SerializeToString
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
