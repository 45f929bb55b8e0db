# syntax=docker/dockerfile:1
# The site agent, in two variants (build targets):
#   gpu  CUDA 11.8 + cuDNN 8 with @tensorflow/tfjs-node-gpu (needs the NVIDIA container toolkit)
#   cpu  Debian with @tensorflow/tfjs-node
# Build from the repository root:
#   docker build -f docker/site-agent.Dockerfile --target gpu -t covnet-site-agent:gpu .
#   docker build -f docker/site-agent.Dockerfile --target cpu -t covnet-site-agent:cpu .
# The hospital's CT archive is mounted read-only at /archive; the agent writes
# only to /var/lib/covnet-agent (status file, audit log).

# ---- sources and JavaScript dependencies, shared by both variants ----
FROM node:20.19-bookworm-slim AS sources
WORKDIR /app
COPY package.json package-lock.json ./
COPY apps/coordinator/package.json apps/coordinator/
COPY apps/site-agent/package.json apps/site-agent/
COPY apps/demo/package.json apps/demo/
COPY libs/protocol/package.json libs/protocol/
COPY libs/imaging/package.json libs/imaging/
COPY libs/model/package.json libs/model/
# The native kernels are compiled by their install script, which needs a C++ compiler and
# the sources; the compiler stays in this stage.
RUN apt-get update && apt-get install -y --no-install-recommends g++ && rm -rf /var/lib/apt/lists/*
COPY libs/native-kernels libs/native-kernels
# The native TensorFlow package is added per variant below, matching its base image.
RUN npm ci --omit=optional --no-audit --no-fund && npm cache clean --force
COPY tsconfig.base.json tsconfig.json ./
COPY libs libs
COPY apps/site-agent apps/site-agent

# ---- GPU: tfjs-node-gpu 4.22 loads libtensorflow 2.9, built for CUDA 11.8 and cuDNN 8 ----
FROM nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04 AS gpu
ARG NODE_VERSION=20.19.5
RUN apt-get update \
  && apt-get install -y --no-install-recommends ca-certificates curl xz-utils \
  && curl -fsSL "https://nodejs.org/dist/v${NODE_VERSION}/node-v${NODE_VERSION}-linux-x64.tar.xz" | tar -xJ -C /usr/local --strip-components=1 \
  && apt-get purge -y curl xz-utils && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*
COPY --from=sources /app /app
WORKDIR /app
RUN npm install --no-save --no-audit --no-fund @tensorflow/tfjs-node-gpu@4.22.0 && npm cache clean --force
RUN useradd --uid 10001 --create-home covnet && mkdir -p /var/lib/covnet-agent && chown covnet /var/lib/covnet-agent
USER covnet
VOLUME ["/var/lib/covnet-agent"]
ENV COVNET_LOG_LEVEL=info
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["/app/node_modules/.bin/tsx", "/app/apps/site-agent/src/main.ts", "status", "--status-file", "/var/lib/covnet-agent/status.json", "--check"]
ENTRYPOINT ["/app/node_modules/.bin/tsx", "/app/apps/site-agent/src/main.ts"]
CMD ["run", "--coordinator", "http://coordinator:8080", "--archive", "/archive", "--status-file", "/var/lib/covnet-agent/status.json", "--audit-log", "/var/lib/covnet-agent/sent.jsonl"]

# ---- CPU: the same agent on tfjs-node ----
FROM node:20.19-bookworm-slim AS cpu
COPY --from=sources /app /app
WORKDIR /app
RUN npm install --no-save --no-audit --no-fund @tensorflow/tfjs-node@4.22.0 && npm cache clean --force
RUN useradd --uid 10001 --create-home covnet && mkdir -p /var/lib/covnet-agent && chown covnet /var/lib/covnet-agent
USER covnet
VOLUME ["/var/lib/covnet-agent"]
ENV COVNET_LOG_LEVEL=info
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["/app/node_modules/.bin/tsx", "/app/apps/site-agent/src/main.ts", "status", "--status-file", "/var/lib/covnet-agent/status.json", "--check"]
ENTRYPOINT ["/app/node_modules/.bin/tsx", "/app/apps/site-agent/src/main.ts"]
CMD ["run", "--coordinator", "http://coordinator:8080", "--archive", "/archive", "--status-file", "/var/lib/covnet-agent/status.json", "--audit-log", "/var/lib/covnet-agent/sent.jsonl"]
