# The serving image: the FastAPI service, CPU PyTorch, the committed weights. No torchvision,
# matplotlib or test tools (those are the train and test extras of pyproject.toml).
#
#   docker build -t digitserve .
#   docker build -t digitserve:cuda --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
#   docker build -t digitserve:ray --build-arg EXTRAS=serve,ray .   (Ray Serve / KubeRay, deploy/ray)

FROM python:3.11-slim AS build

# Torch comes from this index at this version: the CPU build by default (PyPI's build is CUDA's,
# several GB). Point it at a CUDA index for a GPU image.
ARG TORCH_VERSION=2.14.1
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Unset for users (pip uses its indexes); CI points pip at a local wheel folder instead.
ARG PIP_NO_INDEX
ARG PIP_FIND_LINKS
# The pyproject extras installed: serve, or serve,ray for the Ray Serve image.
ARG EXTRAS=serve
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}" --extra-index-url https://pypi.org/simple

WORKDIR /src
COPY pyproject.toml README.md ./
COPY scripts/serve_requirements.py scripts/
RUN python scripts/serve_requirements.py "${EXTRAS}" > /tmp/requirements.txt \
    && /opt/venv/bin/pip install -r /tmp/requirements.txt
# Only the packages serving needs; training/ stays out of the image.
COPY model model
COPY app app
RUN /opt/venv/bin/pip install --no-deps . \
    && /opt/venv/bin/python -c "import app.main, model.checkpoint"


FROM python:3.11-slim

RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin digitserve
COPY --from=build /opt/venv /opt/venv
COPY weights/SHA256SUMS weights/digit.pt weights/sequence.pt weights/digit_sum.pt weights/fashion.pt weights/line_reader.pt /srv/weights/

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    DEVICE=auto \
    WEIGHTS_DIR=/srv/weights

USER 10001:10001
WORKDIR /srv
EXPOSE 8000

# The slim image has no curl: ask /readyz with Python.
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('PORT', '8000'), timeout=2)"]

# Exec form: the server is PID 1 and receives SIGTERM itself.
CMD ["python", "-m", "app"]
