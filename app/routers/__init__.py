"""One router per resource: predictions, models, operations (health, readiness, metrics)."""
