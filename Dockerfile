# One image for the operator and the node agent:
#   docker build -t wasmlet:dev .                 # FROM the official python slim image
#   wasmlet dev image                              # no registry: FROM a locally built base
# BASE is any Debian-like image with python3 and its venv module (hack/build-base-image.sh
# builds one with debootstrap). The agent runs wasmtime in-process (the wheel ships its
# native library), so no stage needs a compiler.
ARG BASE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${BASE} AS build
WORKDIR /src
# pip trusts the system CA bundle (a locally built base carries the build machine's).
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/wasmlet
# Dependencies first, from pyproject.toml alone: this layer is reused until they change.
COPY pyproject.toml ./
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && /opt/wasmlet/bin/pip install --only-binary=:all: -r requirements.txt
# The product only: dev/ (wasmlet_dev: local cluster, test guests, registry helpers) is not
# copied, so the venv holds wasmlet, wasmlet_operator and wasmlet_agent and no dev extra.
COPY README.md ./
COPY wasmlet ./wasmlet
COPY operator ./operator
COPY node-agent ./node-agent
RUN /opt/wasmlet/bin/pip install --no-deps . \
 && echo "wasmlet:x:65532:65532:wasmlet:/nonexistent:/usr/sbin/nologin" >> /etc/passwd \
 && echo "wasmlet:x:65532:" >> /etc/group

FROM ${BASE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="wasmlet" \
      org.opencontainers.image.description="Kubernetes-native orchestrator for WebAssembly workloads: operator and node agent" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/wasmlet /opt/wasmlet
ENV PATH=/opt/wasmlet/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# A fixed non-root uid; the agent's DaemonSet hands it the cache dir. It has a passwd entry
# (made in the build stage, same base): kopf names the operator after getpass.getuser(),
# which raises KeyError without one, and the operator exits at once.
COPY --from=build /etc/passwd /etc/group /etc/
USER 65532:65532
ENTRYPOINT ["wasmlet-agent"]
