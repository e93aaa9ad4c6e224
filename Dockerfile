# syntax=docker/dockerfile:1
# The workshop image: the labs, the recsys_workshop package and its pinned stack (requirements/lock.txt),
# hence the training entrypoint, the model server, the API, the locustfile and JupyterLab. Every pod in
# cluster-setup/manifests, every Kubeflow Pipelines step and every JupyterHub user server runs it; each sets
# its own command. It builds for linux/amd64 and linux/arm64 (the lock's markers pick tensorflow-cpu or
# tensorflow; tests/test_image.py checks both platforms against the package index).
#
# Build it with cluster-setup/image, which tags it with the reference the manifests name:
#   cluster-setup/image --target kind        # docker build here, then kind load docker-image
#   cluster-setup/image --target gke         # Cloud Build into your project's Artifact Registry
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

# Dependencies first, so this (large) layer is rebuilt only when the lock changes. Every pin has a wheel
# for both platforms except psutil 5.9.8 on arm64 (kserve needs psutil < 6, whose releases have no
# linux-aarch64 wheel) and the pure-Python kfp-server-api (an sdist everywhere): on arm64 a C compiler is
# installed for that one build and removed in the same layer.
COPY requirements/lock.txt requirements/no-deps.txt requirements/
RUN set -eux; \
    arch="$(dpkg --print-architecture)"; \
    if [ "${arch}" != amd64 ]; then \
      apt-get update; \
      apt-get install -y --no-install-recommends gcc libc6-dev; \
    fi; \
    python -m pip install --requirement requirements/lock.txt; \
    python -m pip install --no-deps --requirement requirements/no-deps.txt; \
    if [ "${arch}" != amd64 ]; then \
      apt-get purge -y --auto-remove gcc libc6-dev; \
      rm -rf /var/lib/apt/lists/*; \
    fi

# The package, installed in place (editable, without dependencies: the lock has them all), so that it
# finds the cluster setup beside it as in a checkout (recsys_workshop.paths: /app/cluster-setup/versions.env
# and the kustomize overlays the labs render and apply) and the Locust pods find
# /app/recsys_workshop/loadtest/locustfile.py.
COPY pyproject.toml README.md ./
COPY recsys_workshop/ recsys_workshop/
COPY cluster-setup/versions.env cluster-setup/
COPY cluster-setup/manifests/ cluster-setup/manifests/
RUN python -m pip install --no-deps --editable . \
 && python -c "from recsys_workshop import kube; kube.overlay_dir('kind'); kube.overlay_dir('gke'); print(kube.versions()['WORKSHOP_IMAGE_TAG'])"

# The benchmark figures lab 10 shows (its cost curve of serving at catalogue scale).
COPY bench/results/serving-scale.json bench/results/serving-scale.png bench/results/

# The labs, as learners get them (JupyterHub copies labs/ into each home volume on start).
COPY source/ source/
COPY labs/ labs/
COPY solutions/ solutions/

USER 1000:100
ENV HOME=/home/jovyan
WORKDIR /home/jovyan
EXPOSE 8888
CMD ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser", "--notebook-dir=/app"]
