"""The admission webhooks' TLS: trellisd's serving certificate from the mesh CA, and the
`caBundle` the API server needs to trust it, written into the installed webhook
configurations (a leader-only singleton: one replica writes, as Istio's webhook patcher)."""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiClient, ApiException

from trellis.ca.authority import CertificateAuthority

log = logging.getLogger("trellisd.webhook")

_ADMISSION = "/apis/admissionregistration.k8s.io/v1"
SERVING_TTL = timedelta(days=365)


def webhook_configurations(namespace: str) -> list[str]:
    """REST paths of the configurations the installer renders (kube/webhooks.py names)."""
    return [
        f"{_ADMISSION}/mutatingwebhookconfigurations/trellis-sidecar-injector-{namespace}",
        f"{_ADMISSION}/validatingwebhookconfigurations/trellis-validator-{namespace}",
    ]


def serving_context(ca: CertificateAuthority, namespace: str) -> ssl.SSLContext:
    """TLS for the webhook listener: a certificate for the `trellisd` Service's DNS names."""
    names = ["trellisd", f"trellisd.{namespace}", f"trellisd.{namespace}.svc"]
    serving = ca.issue_serving_cert(names, now=datetime.now(UTC), ttl=SERVING_TTL)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory() as tmp:  # load_cert_chain reads files only
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.write_bytes(serving.issued.chain_pem)
        key.write_bytes(serving.private_key_pem)
        context.load_cert_chain(cert, key)
    return context


async def write_ca_bundle(api: ApiClient, namespace: str, root_pem: bytes) -> int:
    """Set every webhook's clientConfig.caBundle; how many configurations changed."""
    bundle = base64.b64encode(root_pem).decode()
    changed = 0
    for path in webhook_configurations(namespace):
        try:
            config = await _call(api, "GET", path)
        except ApiException as err:
            if err.status == 404:
                continue  # not installed by `trellis install` (e.g. a dev cluster)
            raise
        hooks: list[dict[str, Any]] = config.get("webhooks") or []
        if all(h.get("clientConfig", {}).get("caBundle") == bundle for h in hooks):
            continue
        for hook in hooks:
            hook.setdefault("clientConfig", {})["caBundle"] = bundle
        await _call(api, "PUT", path, config)
        changed += 1
        log.info("event=webhook-ca-bundle-written config=%s", path.rsplit("/", 1)[-1])
    return changed


async def keep_ca_bundle(api: ApiClient, namespace: str, root_pem: bytes) -> None:
    """Leader singleton: write the bundle, then re-check each minute (a reinstall resets it)."""
    while True:
        try:
            await write_ca_bundle(api, namespace, root_pem)
        except (ApiException, aiohttp.ClientError, OSError) as err:
            log.warning("event=webhook-ca-bundle-failed error=%r", str(err))
        await asyncio.sleep(60)


async def _call(api: ApiClient, method: str, path: str, body: Any = None) -> Any:
    return await api.call_api(
        path,
        method,
        header_params={"Accept": "application/json", "Content-Type": "application/json"},
        body=body,
        response_types_map={200: "object"},
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )
