"""OTLP/gRPC ingest on 4317: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.

Runs on grpc.aio in the same event loop as the HTTP servers, so the store needs no lock.
The answer is sent after the spans are stored; refused spans are reported as partial success.
"""

from __future__ import annotations

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from trellis.tracing.ingest_http import MAX_BODY_BYTES, store_decoded
from trellis.tracing.otlp_proto import spans_from_request
from trellis.tracing.store import TraceStore


class OtlpTraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, store: TraceStore) -> None:
        self.store = store

    async def Export(  # the RPC's name
        self, request: ExportTraceServiceRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> ExportTraceServiceResponse:
        rejected, reason = store_decoded(self.store, spans_from_request(request), "otlp-grpc")
        response = ExportTraceServiceResponse()
        if rejected:
            response.partial_success.rejected_spans = rejected
            response.partial_success.error_message = reason
        return response


async def start_otlp_grpc(store: TraceStore, host: str, port: int) -> tuple[grpc.aio.Server, int]:
    """Start the OTLP/gRPC server; returns it and the port it bound (useful with port 0)."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_BODY_BYTES),
            ("grpc.so_reuseport", 0),
        ]
    )
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(OtlpTraceService(store), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:  # newer grpcio raises where older ones returned 0
        bound = 0
    if bound == 0:
        raise OSError(f"cannot listen for OTLP/gRPC on {address} (port in use?)")
    await server.start()
    return server, bound
