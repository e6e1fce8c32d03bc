"""Small constructors for Envoy proto pieces every generator needs (Any, Duration, addresses)."""

from __future__ import annotations

from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import any_pb2, duration_pb2, struct_pb2, wrappers_pb2
from google.protobuf.message import Message

from trellis.api.duration import parse_duration


def pack(message: Message) -> any_pb2.Any:
    """A typed extension config as Envoy wants it: google.protobuf.Any with its type URL."""
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def typed_extension(name: str, message: Message) -> base_pb2.TypedExtensionConfig:
    return base_pb2.TypedExtensionConfig(name=name, typed_config=pack(message))


def duration(seconds: float) -> duration_pb2.Duration:
    whole = int(seconds)
    return duration_pb2.Duration(seconds=whole, nanos=round((seconds - whole) * 1e9))


def duration_of(text: str | None) -> duration_pb2.Duration | None:
    """A user's duration string ("10s", "100ms") as a proto Duration; None when unset."""
    return None if text is None else duration(parse_duration(text))


def uint32(value: int | None) -> wrappers_pb2.UInt32Value | None:
    return None if value is None else wrappers_pb2.UInt32Value(value=value)


def socket_address(address: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=address, port_value=port)
    )


def ads_config_source() -> config_source_pb2.ConfigSource:
    """Fetch a resource over the same ADS stream (EDS for clusters, RDS for listeners)."""
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.ApiVersion.V3,
    )


def fractional_percent(percent: float) -> percent_pb2.FractionalPercent:
    """Istio's translation of a 0..100 double: parts per million, so 0.1 % stays exact."""
    return percent_pb2.FractionalPercent(
        numerator=round(percent * 10_000),
        denominator=percent_pb2.FractionalPercent.DenominatorType.MILLION,
    )


def struct(values: dict[str, object]) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(values)
    return result
