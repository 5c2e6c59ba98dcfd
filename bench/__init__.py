"""The throughput benchmark (``python -m bench.run``) and the tutorial-style reference server it compares against."""
