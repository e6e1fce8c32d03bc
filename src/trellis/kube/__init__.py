"""Kubernetes: installer rendering (profiles, overlay, manifests), sidecar injection."""
