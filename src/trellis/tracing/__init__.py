"""The trace store behind `trellis tracing` (Jaeger all-in-one's role, DESIGN §6).

Ingest: OTLP/HTTP (protobuf and JSON) on 4318, OTLP/gRPC on 4317, Zipkin v2 JSON on 9411.
Storage: a bounded in-memory store, oldest trace evicted first. Query: Jaeger's HTTP API on
16686, in Jaeger's JSON shape, so Jaeger's UI and Grafana's Jaeger datasource can read it.
Decoders, store and encoder are pure; only `ingest_http`, `ingest_grpc`, `query_api` and
`server` do I/O.
"""
