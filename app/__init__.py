"""The digitserve HTTP service (``app.main:app``). Knows nothing of training."""
