"""The service on Ray Serve: the same FastAPI app, one copy per replica, across a Ray cluster.

``serve run deploy/ray/serve-config.yaml`` (or ``serve deploy`` to a running cluster, or the
KubeRay ``RayService`` in ``deploy/k8s/overlays/ray``) deploys ``app.ray_serve:app``. Each replica
builds the app with ``create_app`` from the same ``Settings`` (environment variables, set for
every replica by the config's ``runtime_env``), and Ray Serve runs its lifespan: the models load
and warm up once per replica, exactly as under uvicorn. Ray adds what one host lacks: replicas on
many nodes, autoscaling on the requests in flight per replica, replacement of replicas that die,
and rolling updates. Needs the ``ray`` extra (``pip install -e .[ray]``); the plain service never
imports this module.
"""

from __future__ import annotations

from typing import Any

import ray
from ray import serve
from starlette.types import ASGIApp, Receive, Scope, Send

from app.main import create_app
from app.settings import Settings


class LifespanStateInScope:
    """Hands the lifespan's state to every request, as the ASGI spec says a server does.

    The app's lifespan yields the models and the engine as state (``request.state.models``);
    uvicorn copies that state into each request's scope, Ray Serve's replica does not. This
    wrapper keeps the state dict of the lifespan scope and gives each request a shallow copy of it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.state: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            scope.setdefault("state", self.state)
            self.state = scope["state"]
        else:  # Ray's request scope carries an empty state of its own
            scope = {**scope, "state": {**self.state, **scope.get("state", {})}}
        await self.app(scope, receive, send)


@serve.deployment(name="digitserve", ray_actor_options={"num_cpus": 1})
@serve.ingress()
class Digitserve:
    """One replica: the whole FastAPI app, with its engine, batcher and models. Replica counts,
    autoscaling, health-check and drain timings are operations' knobs: they live in
    ``deploy/ray/serve-config.yaml``, not here."""

    def __init__(self) -> None:
        self.web = create_app(Settings(workers=1))  # one process per replica: Ray is the supervisor

    def __serve_build_asgi_app__(self) -> ASGIApp:
        return LifespanStateInScope(self.web)

    def check_health(self) -> None:
        """Ray's health check is the app's readiness, what ``/readyz`` answers: a replica that
        failed to load or is shutting down is restarted or taken out of routing."""
        if not self.web.state.readiness.ready:
            raise RuntimeError("not ready: models not loaded, or shutting down")

    def node(self) -> str:
        """The Ray node this replica runs on (for operators and the failover test)."""
        return ray.get_runtime_context().get_node_id()


def fixed_replicas(config: dict[str, Any], replicas: int) -> dict[str, Any]:
    """The options a Serve config (``deploy/ray/serve-config.yaml``, parsed) gives this
    deployment, with a fixed replica count instead of autoscaling (tests and benchmarks)."""
    (deployment,) = config["applications"][0]["deployments"]
    options = {key: value for key, value in deployment.items() if key not in ("name", "autoscaling_config")}
    return {**options, "num_replicas": replicas}


app = Digitserve.bind()
