"""The service's Prometheus metrics (``app.middleware`` counts the requests, the engine the
forward passes, the routes the images)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """The service's Prometheus metrics, in a registry of its own (one per app instance)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("http_requests_total", "HTTP requests", ["method", "endpoint", "status"], registry=self.registry)
        self.latency = Histogram("http_request_duration_seconds", "HTTP request latency", ["method", "endpoint", "status"],
                                 buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=self.registry)
        self.inference = Histogram("inference_duration_seconds", "time in the models (preprocessing excluded)", ["model"],
                                   buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1), registry=self.registry)
        self.batch_size = Histogram("inference_batch_size", "images per forward pass", ["model"],
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=self.registry)
        self.batch_requests = Histogram("inference_batch_requests", "requests sharing one forward pass", ["model"],
                                        buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=self.registry)
        self.queue_wait = Histogram("inference_queue_wait_seconds", "time a request waits in its model's queue before "
                                    "its batch starts", ["model"],
                                    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5, 10),
                                    registry=self.registry)
        self.queue_depth = Gauge("inference_queue_depth", "images waiting for a forward pass", ["model"], registry=self.registry)
        self.in_flight = Gauge("prediction_requests_in_flight", "prediction requests being served", registry=self.registry)
        self.rejected = Counter("prediction_requests_rejected_total", "prediction requests answered 503 at once",
                                ["reason"], registry=self.registry)
        self.images = Counter("images_processed_total", "images decoded and preprocessed", ["endpoint"], registry=self.registry)
