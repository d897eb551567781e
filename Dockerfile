# syntax=docker/dockerfile:1
#
# Every Titanium image from one file; pick one with --target:
#   load-balancer, api-gateway, auth-service, user-service, blog-service   the Swift services
#   dashboard-ui                                                             nginx serving dashboard-ui/ and Chart.js
#   db-backup                                                                sqlite3, for the users.db backup CronJob
# e.g. `docker build --target user-service -t titanium/user-service .`. The Swift build stage is
# shared, so building several targets compiles the package once (BuildKit caches the stage).
# Debian packages are not pinned to versions (hadolint DL3008): bookworm's security updates
# should reach the images on every rebuild.

ARG SWIFT_IMAGE=swift:6.3-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim
ARG NGINX_IMAGE=nginx:1.27-bookworm

# ---------------------------------------------------------------------------------------------
# Build: release binaries of the five services with the Swift runtime linked in statically.
FROM ${SWIFT_IMAGE} AS build
# hadolint ignore=DL3008
RUN export DEBIAN_FRONTEND=noninteractive \
    && apt-get -q update \
    && apt-get -q install -y --no-install-recommends libhiredis-dev libsqlite3-dev libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what `swift build` reads, so an edit to the dashboard or the nginx file does not rebuild
# Swift. `Package.*` takes Package.resolved when there is one; it always matches Package.swift,
# so buildah, which refuses a source pattern that matches nothing, takes it too.
COPY Package.* ./
COPY Shared/ Shared/
COPY Services/ Services/
COPY Tests/ Tests/
COPY Benchmarks/ Benchmarks/
# .build lives in a cache mount so that a rebuild after a source edit is incremental; the
# binaries are copied out of it in the same step, without their DWARF debug information
# (user-service: 191 MB with it, 119 MB without; the symbol table stays, so crash backtraces
# still name functions).
RUN --mount=type=cache,id=titanium-swiftpm-build,target=/src/.build,sharing=locked \
    set -eu; \
    swift build -c release --static-swift-stdlib; \
    bin="$(swift build -c release --static-swift-stdlib --show-bin-path)"; \
    mkdir -p /staging/resources; \
    for product in load-balancer api-gateway auth-service user-service blog-service; do \
        strip --strip-debug -o "/staging/$product" "$bin/$product"; \
    done; \
    find "$bin/" -maxdepth 1 -name '*.resources' -exec cp -R {} /staging/resources/ \; ; \
    cp /usr/libexec/swift/linux/swift-backtrace-static /staging/

# ---------------------------------------------------------------------------------------------
# Chart.js 3.9.1 from Debian's libjs-chart.js: the dashboard loads it from vendor/chart.min.js.
FROM ${RUNTIME_IMAGE} AS chartjs
# hadolint ignore=DL3008
RUN export DEBIAN_FRONTEND=noninteractive \
    && apt-get -q update \
    && apt-get -q install -y --no-install-recommends libjs-chart.js \
    && rm -rf /var/lib/apt/lists/*

# The dashboard's static files with Chart.js beside them (dashboard-ui/vendor is a local symlink
# and is left out of the build context by .dockerignore).
FROM scratch AS dashboard-files
COPY dashboard-ui/ /site/
COPY --from=chartjs /usr/share/javascript/chart.js/chart.min.js /site/vendor/chart.min.js

# ---------------------------------------------------------------------------------------------
# Runtime base: slim Debian, the two C libraries the services link (hiredis, SQLite), CA
# certificates and time zones; a non-root user; settings from the environment.
FROM ${RUNTIME_IMAGE} AS runtime
# hadolint ignore=DL3008
RUN export DEBIAN_FRONTEND=noninteractive \
    && apt-get -q update \
    && apt-get -q install -y --no-install-recommends libhiredis0.14 libsqlite3-0 ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 titanium \
    && useradd --system --uid 10001 --gid titanium --home-dir /app --no-create-home --shell /usr/sbin/nologin titanium \
    && install -d -o titanium -g titanium -m 0750 /data
WORKDIR /app
COPY --from=build /staging/swift-backtrace-static /app/
COPY --from=build /staging/resources/ /app/
# Listen on every interface inside a container; keep data under the /data volume. Crash
# backtraces go to stderr, symbolicated by the static backtracer copied above.
ENV HTTP_HOST=0.0.0.0 \
    DATA_DIR=/data \
    SWIFT_BACKTRACE=enable=yes,sanitize=yes,threads=all,images=all,interactive=no,swift-backtrace=/app/swift-backtrace-static
USER 10001:10001

FROM runtime AS load-balancer
COPY --from=build /staging/load-balancer /app/
# Fallback dashboard, served from DASHBOARD_DIR when UI_URLS does not point at dashboard-ui.
COPY --from=dashboard-files /site/ /app/dashboard-ui/
ENV HTTP_PORT=7100 DASHBOARD_DIR=/app/dashboard-ui
EXPOSE 7100
ENTRYPOINT ["/app/load-balancer"]

FROM runtime AS api-gateway
COPY --from=build /staging/api-gateway /app/
ENV HTTP_PORT=7200
EXPOSE 7200
ENTRYPOINT ["/app/api-gateway"]

FROM runtime AS auth-service
COPY --from=build /staging/auth-service /app/
ENV HTTP_PORT=7301
EXPOSE 7301
ENTRYPOINT ["/app/auth-service"]

FROM runtime AS user-service
COPY --from=build /staging/user-service /app/
ENV HTTP_PORT=7302
EXPOSE 7302
ENTRYPOINT ["/app/user-service"]

FROM runtime AS blog-service
COPY --from=build /staging/blog-service /app/
ENV HTTP_PORT=7303
EXPOSE 7303
ENTRYPOINT ["/app/blog-service"]

# ---------------------------------------------------------------------------------------------
# sqlite3 for the users.db backup CronJob (`.backup` makes a consistent copy of a live WAL database).
FROM ${RUNTIME_IMAGE} AS db-backup
# hadolint ignore=DL3008
RUN export DEBIAN_FRONTEND=noninteractive \
    && apt-get -q update \
    && apt-get -q install -y --no-install-recommends sqlite3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 titanium \
    && useradd --system --uid 10001 --gid titanium --no-create-home --shell /usr/sbin/nologin titanium
USER 10001:10001
ENTRYPOINT ["/bin/sh", "-c"]

# ---------------------------------------------------------------------------------------------
# dashboard-ui: nginx as its unprivileged user on port 8080, everything it writes under /tmp so
# the root filesystem can be read-only.
FROM ${NGINX_IMAGE} AS dashboard-ui
RUN rm -f /etc/nginx/conf.d/default.conf
COPY docker/dashboard-ui.nginx.conf /etc/nginx/nginx.conf
COPY --from=dashboard-files /site/ /usr/share/nginx/html/
USER 101:101
EXPOSE 8080
