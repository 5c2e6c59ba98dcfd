"""The Ray Serve config, and the service on a real Ray cluster of two nodes on this machine (``ray.cluster_utils.Cluster``:
head + one worker node, one CPU each, every address 127.0.0.1, no dashboard): two replicas of
``app.ray_serve``, one per node, answer real MNIST digits through Ray's HTTP proxy; then the
worker node dies while a client keeps sending, and the service keeps answering.

The failover figures are printed (``pytest -s``) and written to ``$RAY_FAILOVER_REPORT`` when set.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import yaml

from bench.processes import free_port
from tests.app.conftest import correct_indices, png_part
from tests.conftest import ROOT, WEIGHTS
from training.strips import digit_image

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Ray's switch for a cluster confined to this host: addresses resolve to 127.0.0.1, not to the
# machine's network address (read when ray is imported).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
import ray  # noqa: E402  (the test extra installs the ray extra)
from ray import serve  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402
from ray.serve.schema import ServeDeploySchema  # noqa: E402

from app.ray_serve import Digitserve, fixed_replicas  # noqa: E402

CONFIG = yaml.safe_load((ROOT / "deploy" / "ray" / "serve-config.yaml").read_text())
SENDERS = 4  # clients sending at once, so that requests are in flight on the node that dies
NODE = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False, "object_store_memory": 80 * 2**20}


def test_the_serve_config_is_valid_and_deploys_this_app():
    config = ServeDeploySchema.model_validate(CONFIG)
    (application,) = config.applications
    assert application.import_path == "app.ray_serve:app" and application.route_prefix == "/"
    (deployment,) = application.deployments
    assert deployment.name == Digitserve.name
    assert deployment.autoscaling_config["min_replicas"] >= 2, "losing one replica must leave one serving"
    with pytest.raises(ValueError):
        ServeDeploySchema.model_validate({**CONFIG, "applications": [{**CONFIG["applications"][0], "import_path": 1}]})


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    cluster = Cluster(initialize_head=True, head_node_args=NODE)
    cluster.add_node(**NODE)
    ray.init(address=cluster.address, runtime_env={"env_vars": {"WEIGHTS_DIR": str(WEIGHTS), "DEVICE": "cpu",
                                                                 "TORCH_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}})
    try:
        yield cluster
    finally:
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture(scope="module")
def service(cluster: Cluster) -> Iterator[str]:
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port}, proxy_location="HeadOnly")
    serve.run(Digitserve.options(**fixed_replicas(CONFIG, 2)).bind(), name="digitserve", route_prefix="/")
    yield f"http://127.0.0.1:{port}"


def test_two_replicas_on_two_nodes_answer_and_survive_losing_a_node(cluster, service, mnist_test, digit_checkpoint):
    indices = correct_indices(mnist_test, digit_checkpoint, 20)
    uploads = [[png_part("files", digit_image(mnist_test.images[i]))] for i in indices]
    with httpx.Client(base_url=service, timeout=30) as client:
        assert client.get("/readyz").json() == {"status": "ready"}
        for index, files in zip(indices, uploads):
            response = client.post("/predict/digit", files=files)
            assert response.status_code == 200, response.text
            assert response.json()["predictions"][0]["label"] == mnist_test.labels[index]

    handle = serve.get_deployment_handle("digitserve", app_name="digitserve")
    nodes = {handle.node.remote().result() for _ in range(40)}
    assert nodes == {node["NodeID"] for node in ray.nodes() if node["Alive"]}, "one replica on each node"
    assert len(nodes) == 2

    outcomes: list[tuple[float, int]] = []
    stop = threading.Event()

    def keep_sending(k: int) -> None:
        with httpx.Client(base_url=service, timeout=30) as client:
            while not stop.is_set():
                try:
                    status = client.post("/predict/digit", files=uploads[k % len(uploads)]).status_code
                except httpx.HTTPError:
                    status = 0  # connection failed: a lost request too
                outcomes.append((time.monotonic(), status))
                k += 1

    senders = [threading.Thread(target=keep_sending, args=(k,)) for k in range(SENDERS)]
    for sender in senders:
        sender.start()
    time.sleep(3)
    (worker,) = cluster.worker_nodes
    removed_at = time.monotonic()
    cluster.remove_node(worker, allow_graceful=False)  # a crash: the raylet and its workers killed
    time.sleep(12)
    stop.set()
    for sender in senders:
        sender.join()
    survivors = {handle.node.remote().result() for _ in range(10)}

    before = Counter(status for at, status in outcomes if at < removed_at)
    after = Counter(status for at, status in outcomes if at >= removed_at)
    last = [status for _, status in outcomes[-20:]]
    report = {"sent_before_removal": sum(before.values()), "statuses_before": dict(before),
              "sent_after_removal": sum(after.values()), "statuses_after": dict(after),
              "failed_after_removal": sum(n for status, n in after.items() if status != 200)}
    print("\nRay failover:", json.dumps(report))
    if os.environ.get("RAY_FAILOVER_REPORT"):
        with open(os.environ["RAY_FAILOVER_REPORT"], "w") as out:
            json.dump(report, out, indent=1)
    assert before == Counter({200: sum(before.values())}) and sum(before.values()) > 0
    assert survivors == {cluster.head_node.node_id}
    assert after[200] > 0 and last == [200] * len(last), "the surviving replica answers"
    assert report["failed_after_removal"] <= 0.2 * sum(after.values())
