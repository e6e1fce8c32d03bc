"""`trellisd --kubernetes`: the controller, the admission webhooks and leader-only work.

Started by controlplane/app.py in place of the local-runtime-only loops; runs until
cancelled and closes its API client on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web
from kubernetes_asyncio.client import ApiClient

from trellis.ca.authority import CertificateAuthority
from trellis.controlplane.state import MeshState
from trellis.errors import TrellisError
from trellis.kube.admission import Injector, admission_app
from trellis.kube.cluster import Cluster, connect
from trellis.kube.controller import ControllerSettings, KubeController
from trellis.kube.inject import InjectSettings
from trellis.kube.installer import read_record
from trellis.kube.leader import Singleton
from trellis.kube.options import KubeOptions
from trellis.kube.overlay import build_spec
from trellis.kube.root_cert import RootCertPublisher
from trellis.kube.webhook_ca import keep_ca_bundle, serving_context

log = logging.getLogger("trellisd.kube")


async def inject_settings(api: ApiClient, namespace: str) -> InjectSettings:
    """From the install record (the images and addresses actually installed), else defaults."""
    try:
        record = await read_record(Cluster(api), namespace)
    except TrellisError as err:
        log.warning("event=install-record-unreadable error=%r", str(err))
        record = None
    spec = record.spec if record else build_spec(profile=None, overlays=[], sets=[])
    return InjectSettings.from_spec(spec)


def _labels_of(controller: KubeController) -> Any:
    def labels(namespace: str) -> Mapping[str, Any] | None:
        if namespace not in controller.registry.namespaces.objects:
            return None  # not listed yet: trust the API server's namespaceSelector
        return controller.registry.namespace_labels(namespace)

    return labels


async def run_kubernetes(
    state: MeshState,
    options: KubeOptions,
    singletons: Sequence[Singleton],
    ca: CertificateAuthority,
) -> None:
    api = await connect(options.kubeconfig)
    runner: web.AppRunner | None = None
    try:
        settings = ControllerSettings(
            namespace=options.namespace, identity=options.identity or socket.gethostname()
        )
        controller = KubeController(api, state, settings)
        root = ca.root_bundle_pem()
        bundle = functools.partial(keep_ca_bundle, api, options.namespace, root)
        registry = controller.registry

        def namespaces() -> list[str]:
            return list(registry.namespaces.objects)

        publish_root = functools.partial(RootCertPublisher(api, root).run, namespaces)
        if options.webhook_host:
            injector = Injector(
                await inject_settings(api, options.namespace), _labels_of(controller)
            )
            app = admission_app(injector, lambda: state.resources("DestinationRule"))
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            tls = serving_context(ca, options.namespace)
            await web.TCPSite(
                runner, options.webhook_host, options.webhook_port, ssl_context=tls
            ).start()
            log.info(
                "event=webhooks-listening address=%s:%d", options.webhook_host, options.webhook_port
            )
        await controller.run([*singletons, bundle, publish_root])
    finally:
        if runner is not None:
            with contextlib.suppress(Exception):
                await runner.cleanup()
        await asyncio.shield(api.close())
