# syntax=docker/dockerfile:1
# The workshop image: the labs, the recsys_workshop package and its pinned stack (requirements/lock.txt),
# hence the training entrypoint, the model server, the API, the locustfile and JupyterLab. Every pod in
# cluster-setup/manifests and every JupyterHub user server runs it; each sets its own command.
#
#   docker build -t localhost/recsys-workshop:0.1.0 .            # kind (then: kind load docker-image ...)
#   docker build -t ghcr.io/recsys-workshop/recsys-workshop:0.1.0 .
#
# The base image is pinned to an exact tag (cluster-setup/versions.env, PYTHON_BASE_IMAGE). When you
# publish, pin its digest as well: docker buildx imagetools inspect python:3.11.15-slim-trixie, then
# build with --build-arg PYTHON_IMAGE=python:3.11.15-slim-trixie@sha256:<digest>.
ARG PYTHON_IMAGE=python:3.11.15-slim-trixie
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# The unprivileged user every container runs as: uid 1000, gid 100 (the Jupyter convention, which the
# manifests' securityContext and the JupyterHub values repeat).
RUN useradd --create-home --uid 1000 --gid 100 --shell /bin/bash jovyan

WORKDIR /app

# Dependencies first, so this (large) layer is rebuilt only when the lock changes.
COPY requirements/lock.txt requirements/no-deps.txt requirements/
RUN python -m pip install --requirement requirements/lock.txt \
 && python -m pip install --no-deps --requirement requirements/no-deps.txt

# The package itself, without dependencies (the lock has them all); its source stays in /app too, where
# the Locust pods find /app/recsys_workshop/loadtest/locustfile.py.
COPY pyproject.toml README.md ./
COPY recsys_workshop/ recsys_workshop/
RUN python -m pip install --no-deps . \
 && python -c "import recsys_workshop"

# The labs, as learners get them (JupyterHub copies labs/ into each home volume on start).
COPY source/ source/
COPY labs/ labs/
COPY solutions/ solutions/

USER 1000:100
ENV HOME=/home/jovyan
WORKDIR /home/jovyan
EXPOSE 8888
CMD ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser", "--notebook-dir=/app"]
