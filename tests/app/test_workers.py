"""WORKERS=auto: one worker per usable CPU, as many as fit in the memory limit (fakes stand in
for the cgroup and /proc files a container would show)."""

from __future__ import annotations

import pytest

from app.settings import Settings, resolve_workers
from model.devices import memory_limit, usable_cpus

GiB = 1024**3


@pytest.mark.parametrize(("cpus", "memory", "expected"), [
    (2, 24 * GiB, 2),  # this machine: the CPUs decide
    (8, 2 * GiB, 2),  # a 2 GB container on a big host: memory decides (800 MB each here)
    (4, None, 4),  # no memory figure at all: the CPUs decide
    (2, 500 * 1024**2, 1),  # not even one worker's worth: still one
])
def test_auto_takes_the_cpus_capped_by_memory(cpus, memory, expected):
    assert resolve_workers(800, cpus=cpus, memory=memory) == expected


def test_a_number_is_taken_as_given_and_auto_resolves_on_this_machine(monkeypatch):
    monkeypatch.setenv("WORKERS", "3")
    assert Settings().worker_count == 3
    monkeypatch.setenv("WORKERS", "auto")
    assert Settings().workers == "auto"
    assert 1 <= Settings().worker_count <= usable_cpus()
    monkeypatch.setenv("WORKERS", "0")
    with pytest.raises(ValueError):
        Settings()


def test_cgroup_quota_caps_the_cpus(tmp_path):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("100000 100000\n")  # --cpus 1
    assert usable_cpus(cpu_max) == 1
    cpu_max.write_text("max 100000\n")
    assert usable_cpus(cpu_max) >= 1


def test_memory_limit_reads_cgroup_v2_v1_and_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16384000 kB\nMemFree:         1000 kB\n")
    v2, v1 = tmp_path / "memory.max", tmp_path / "limit_in_bytes"
    assert memory_limit(v2, v1, meminfo) == 16384000 * 1024  # no cgroup files: the machine's total
    v2.write_text("2147483648\n")
    assert memory_limit(v2, v1, meminfo) == 2 * GiB  # --memory 2g
    v2.write_text("max\n")
    v1.write_text("9223372036854771712\n")  # cgroup v1's "no limit"
    assert memory_limit(v2, v1, meminfo) == 16384000 * 1024
    assert memory_limit(tmp_path / "a", tmp_path / "b", tmp_path / "c") is None


def test_every_worker_logs_and_sigterm_stops_them_all_cleanly(mnist_test):
    """With two workers (what WORKERS=auto gives on two cores) each worker process logs as the
    single process does, its request lines included, and SIGTERM ends the lot with exit 0."""
    import signal

    import httpx

    from bench.processes import running_service
    from training.strips import digit_image, encode

    with running_service(WORKERS="2") as service:
        service.read_until("ready: 5 models")
        service.read_until("ready: 5 models")
        upload = {"files": ("d.png", encode(digit_image(mnist_test.images[0])), "image/png")}
        response = httpx.post(service.url + "/predict/digit", files=upload, headers={"X-Request-ID": "two-workers"},
                              timeout=30)
        assert response.status_code == 200
        assert '"request_id": "two-workers"' in service.read_until("two-workers")
        service.process.send_signal(signal.SIGTERM)
        assert service.process.wait(timeout=30) == 0


def test_a_killed_worker_is_replaced_and_only_its_requests_are_lost(mnist_test):
    """kill -9 of one of two workers under load: requests keep being answered by the other, the
    supervisor starts a replacement, which becomes ready, and then every request succeeds."""
    import os
    import signal
    import threading
    import time
    from pathlib import Path

    import httpx

    from bench.processes import running_service
    from training.strips import digit_image, encode

    upload = {"files": ("d.png", encode(digit_image(mnist_test.images[0])), "image/png")}
    with running_service(WORKERS="2") as service:
        service.read_until("ready: 5 models")
        service.read_until("ready: 5 models")
        children = Path(f"/proc/{service.process.pid}/task/{service.process.pid}/children").read_text().split()
        workers = [int(pid) for pid in children if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]
        assert len(workers) == 2
        for pid in workers:  # workers sharing the cores do not spin between parallel regions
            assert b"OMP_WAIT_POLICY=PASSIVE" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        outcomes: list[str] = []
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(timeout=10) as client:
                while not stop.is_set():
                    try:
                        outcomes.append(str(client.post(service.url + "/predict/digit", files=upload).status_code))
                    except httpx.TransportError as error:
                        outcomes.append(type(error).__name__)

        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        while len(outcomes) < 50:
            time.sleep(0.01)
        os.kill(workers[0], signal.SIGKILL)
        service.read_until("ready: 5 models", timeout=60)  # the replacement
        assert httpx.get(service.url + "/readyz").status_code == 200
        after_replacement = len(outcomes)
        while len(outcomes) < after_replacement + 50:
            time.sleep(0.01)
        stop.set()
        for thread in threads:
            thread.join()
        lost = [o for o in outcomes if o != "200"]
        assert all(o != "500" for o in outcomes)
        print(f"{len(outcomes)} requests, {len(lost)} lost: {lost}")
        assert len(lost) <= 8, lost  # at most the killed worker's requests in flight (4 clients)
        assert outcomes[after_replacement:].count("200") == len(outcomes) - after_replacement
