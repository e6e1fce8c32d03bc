"""Trellis benchmarks: data plane (bench/dataplane.py) and control plane (bench/controlplane.py)."""
