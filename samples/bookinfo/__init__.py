"""Bookinfo: four small services that behave like Istio's Bookinfo sample."""
