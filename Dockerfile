# One image for the operator and for handler workers; it carries the kubesaga package only:
#   docker run IMAGE                                   -> kubesaga operator
#   docker run IMAGE worker --app-dir /app mymodule:worker
# Handler code lives in images built FROM this one (examples/Dockerfile is the pattern).
# Stage 1 builds the kubesaga wheel and installs it with its dependencies into a venv;
# stage 2 copies only that venv (same base image, so the paths match) and runs as UID 10001.
# PYTHON_IMAGE is any Debian-based image with python, venv and pip: the upstream slim image by
# default, or a local one (e.g. bookworm's python3 + python3-venv + python-is-python3).
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && /opt/venv/bin/pip install --no-cache-dir /wheels/*.whl

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="kubesaga" \
      org.opencontainers.image.description="Kubernetes-native saga orchestrator: operator and handler workers" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A passwd entry for the UID: libraries that ask for the user name (getpass.getuser) must not fail.
RUN groupadd --system --gid 10001 kubesaga \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin kubesaga
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["kubesaga"]
CMD ["operator"]
