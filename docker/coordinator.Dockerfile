# syntax=docker/dockerfile:1
# The coordinator: NestJS over socket.io and REST, on SQLite in /var/lib/covnet
# or on PostgreSQL from DATABASE_URL. Build from the repository root:
#   docker build -f docker/coordinator.Dockerfile -t covnet-coordinator .

# ---- the native kernels, whose FedAvg fold the coordinator uses; the compiler stays here ----
FROM node:20.19-bookworm-slim AS native-kernels
RUN apt-get update && apt-get install -y --no-install-recommends g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /app/libs/native-kernels
COPY libs/native-kernels/package.json libs/native-kernels/build.cjs ./
COPY libs/native-kernels/src src
# Where the build fails (a CPU other than x86-64), build.cjs exits 0 and leaves the reason in
# build/build-error.txt, which the coordinator logs at startup before folding on the wasm kernel.
RUN node build.cjs

# ---- the coordinator ----
FROM node:20.19-bookworm-slim

WORKDIR /app
# The workspace manifests first, so that the dependency layer is rebuilt only
# when they change. tsx runs the TypeScript sources directly: there is no build step.
COPY package.json package-lock.json ./
COPY apps/coordinator/package.json apps/coordinator/
COPY apps/site-agent/package.json apps/site-agent/
COPY apps/demo/package.json apps/demo/
COPY libs/protocol/package.json libs/protocol/
COPY libs/imaging/package.json libs/imaging/
COPY libs/model/package.json libs/model/
# The native kernels' install script finds no compiler in this image and says so; their
# build is copied from the stage above once npm ci is done.
COPY libs/native-kernels/package.json libs/native-kernels/build.cjs libs/native-kernels/
# --omit=optional leaves out the native TensorFlow packages, which the
# coordinator never loads. better-sqlite3 needs its install script.
RUN npm ci --omit=optional --no-audit --no-fund && npm cache clean --force && rm -rf libs/native-kernels/build

COPY tsconfig.base.json tsconfig.json ./
COPY libs/protocol libs/protocol
COPY libs/native-kernels/src libs/native-kernels/src
# The addon, or the reason it was not built. Where it is missing or the CPU lacks AVX2, the
# coordinator logs why at startup and folds FedAvg updates on the wasm kernel.
COPY --from=native-kernels /app/libs/native-kernels/build libs/native-kernels/build
COPY apps/coordinator apps/coordinator

# Non-root: the node image's user "node" (uid 1000) owns only the data dir.
RUN mkdir -p /var/lib/covnet && chown node:node /var/lib/covnet
USER node
VOLUME ["/var/lib/covnet"]
ENV NODE_ENV=production LOG_LEVEL=info
EXPOSE 8080

# The check reads the coordinator's flags from /proc/1/cmdline and the
# COVNET_TLS_* variables, so it requests /api/health over HTTPS when TLS is on
# and checks that the server presents the --tls-cert certificate. Where client
# certificates are required, COVNET_HEALTH_CERT and COVNET_HEALTH_KEY name one
# for it; without them it checks the TLS handshake only.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
  CMD ["/app/node_modules/.bin/tsx", "/app/apps/coordinator/src/health-check.ts"]

ENTRYPOINT ["/app/node_modules/.bin/tsx", "/app/apps/coordinator/src/main.ts"]
# The initial model is mounted at /etc/covnet/model-v0.cvnw; sites are added with
# `docker compose exec coordinator /app/node_modules/.bin/tsx /app/apps/coordinator/src/main.ts sites add NAME --data-dir /var/lib/covnet`.
CMD ["--host", "0.0.0.0", "--port", "8080", "--data-dir", "/var/lib/covnet", "--initial-model", "/etc/covnet/model-v0.cvnw"]
