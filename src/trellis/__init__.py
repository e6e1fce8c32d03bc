"""Trellis: an Istio-compatible service mesh (Python control plane, Envoy data plane)."""

__version__ = "0.1.0"
