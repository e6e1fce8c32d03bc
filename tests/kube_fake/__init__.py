"""A fake Kubernetes API server for tests (a test double, not a Kubernetes).

See server.py for what it implements of the real wire protocol and what it leaves out.
"""

from tests.kube_fake.harness import running_fake
from tests.kube_fake.server import FakeApiServer

__all__ = ["FakeApiServer", "running_fake"]
