"""httpbin: an HTTP request/response echo service like the one Istio's tasks use."""
