# One image for the operator and the node agent (kind or any cluster):
#   docker build -t wasmlet:dev . && kind load docker-image wasmlet:dev
# The agent runs wasmtime in-process (the wasmtime wheel ships its native library).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
# The product only: dev/ (wasmlet_dev: local cluster, test guests, registry helpers) is not
# copied, so the wheel holds wasmlet, wasmlet_operator and wasmlet_agent and no dev extra.
COPY wasmlet ./wasmlet
COPY operator ./operator
COPY node-agent ./node-agent
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 65532 --home-dir /var/lib/wasmlet wasmlet \
    && mkdir -p /var/lib/wasmlet && chown wasmlet /var/lib/wasmlet
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 65532
ENTRYPOINT ["wasmlet-agent"]
