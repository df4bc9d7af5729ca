# syntax=docker/dockerfile:1.7
#
# feature-store: one static-ish executable (glibc only) on a distroless base.
#
#   docker build -t REGISTRY/feature-store:VERSION .
#   docker run --rm -p 127.0.0.1:8000:8000 -v fs-data:/data REGISTRY/feature-store:VERSION
#
# Stages:
#   deps   npm ci against package-lock.json (the lockfile of record; bun does not read it
#          frozen), production dependencies only, no install scripts
#   build  the pinned Bun compiles src/cli.ts into /app/dist/feature-store (`bun run build`,
#          which first applies scripts/patch-deps.ts's fixes to node_modules)
#   final  gcr.io/distroless/base-nossl-debian12: glibc, CA certificates, tzdata, /etc/passwd
#          with nonroot (65532); no shell, no package manager. The binary links only glibc
#          (libc, libm, libpthread, libdl and the loader; test/deploy/image.test.ts checks this
#          with ldd and runs it in a root filesystem holding only what this base holds).
#
# Images are pinned by tag; pin them by digest too (@sha256:...) in your registry mirror.
# The Bun tag must match the "bun" devDependency in package.json (the test checks it).

FROM node:22.12.0-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error

FROM oven/bun:1.4.5-debian AS build
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json tsconfig.json bunfig.toml ./
COPY scripts/build.ts scripts/patch-deps.ts ./scripts/
COPY migrations ./migrations
COPY src ./src
# `version` proves the executable starts; dist/data becomes the (empty, nonroot-owned) volume.
RUN bun run build \
 && ./dist/feature-store version \
 && mkdir -p dist/data

FROM gcr.io/distroless/base-nossl-debian12:nonroot
COPY --from=build /app/dist/feature-store /feature-store
COPY --from=build --chown=65532:65532 /app/dist/data /data
# All writable state lives under DATA_DIR (the embedded SQLite database when POSTGRES_URL is
# unset); everything else may be mounted read-only.
ENV DATA_DIR=/data \
    HOST=0.0.0.0 \
    PORT=8000
USER 65532:65532
VOLUME ["/data"]
# 8000: the HTTP API (serve); 9464: the worker's /metrics and /healthz (worker).
EXPOSE 8000 9464
# For `serve` (the default command). The image has no shell or curl: the binary checks itself.
# Other commands (worker, migrate) override or disable it (see deploy/docker-compose.yml).
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/feature-store", "healthcheck"]
ENTRYPOINT ["/feature-store"]
CMD ["serve"]
