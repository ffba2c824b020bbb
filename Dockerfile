# pulldoctor agent image: `docker build -t ghcr.io/pulldoctor/pulldoctor:0.1.0 .`
# Stage 1 builds a virtualenv with the project and its dependencies; stage 2 gets only
# that virtualenv (no compiler, no pip cache, no sources), runs as uid 65532.
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Same path in both stages: a virtualenv's scripts hard-code it.
RUN python -m venv /opt/pulldoctor
WORKDIR /src
COPY pyproject.toml README.md ./
COPY probes ./probes
COPY agent ./agent
# pip compiles every module to bytecode here, so the read-only image never needs to.
RUN /opt/pulldoctor/bin/pip install . \
 && /opt/pulldoctor/bin/pip uninstall --yes pip setuptools wheel

FROM python:3.11-slim
LABEL org.opencontainers.image.title="pulldoctor" \
      org.opencontainers.image.description="Per-node diagnostic agent for container image pull failures" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /opt/pulldoctor /opt/pulldoctor
# Read-only root filesystem in the DaemonSet: no .pyc writes, unbuffered logs.
ENV PATH=/opt/pulldoctor/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 65532:65532
EXPOSE 9797
ENTRYPOINT ["pulldoctor"]
CMD ["agent"]
