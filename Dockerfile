# Gatehouse image: build on Debian 12 with the distribution's libraries, run on
# bookworm-slim with only their shared objects.
#   docker build -t gatehouse:local .        (compose.yaml does this for you)
# No `# syntax=` directive: BuildKit would fetch that frontend image from a
# registry first, and an offline build would fail on it; the built-in
# frontend reads everything here.
# Configuration is environment only (GATEHOUSE_*); see README.md.

ARG DEBIAN_RELEASE=bookworm

# -- build ---------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE} AS build
ENV DEBIAN_FRONTEND=noninteractive
# scripts/lib.sh GH_APT_PACKAGES without the test, service and bench packages
# (catch2, postgresql-15, nats-server, wrk, python3, ssh, ccache).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config git ca-certificates ccache \
      libcaf-dev libnats-dev libpqxx-dev libpq-dev libcpp-httplib-dev \
      libprotobuf-dev protobuf-compiler libssl-dev nlohmann-json3-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# .git is in the context on purpose: CMake asks git for the revision that
# /api/v4/internal/check reports as gitlab_rev ("unknown" without it).
COPY . .
# ccache (CMakeLists.txt uses it when present) in a build cache mount, which
# is never part of the image: a rebuild after a small change compiles only
# what changed. Only the server target: the benchmark tools do not ship.
ENV CCACHE_DIR=/ccache
RUN --mount=type=cache,target=/ccache \
    cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DGATEHOUSE_BUILD_TESTS=OFF \
 && cmake --build /build -j"$(nproc)" --target gatehouse \
 && strip /build/gatehouse \
 && /build/gatehouse --version

# -- runtime -------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ENV DEBIAN_FRONTEND=noninteractive
# Runtime libraries of the -dev packages above (apt pulls their own
# dependencies: libpq5, brotli, zlib, ...); curl for the health check.
# tests/compose/check_dockerfile.py compares this list with `ldd gatehouse`.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libcaf-core0.17 libnats3.4 libpqxx-6.4 libcpp-httplib0.11 \
      libprotobuf32 libssl3 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 gatehouse \
 && useradd --system --uid 10001 --gid gatehouse --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin gatehouse \
 && install -d -o gatehouse -g gatehouse -m 0750 /var/lib/gatehouse \
      /var/lib/gatehouse/uploads
COPY --from=build /build/gatehouse /usr/local/bin/gatehouse
# Fail the build here, not at first start, if a shared library is missing.
RUN if ldd /usr/local/bin/gatehouse | grep 'not found'; then exit 1; fi \
 && gatehouse --version
USER 10001:10001
ENV GATEHOUSE_HTTP_LISTEN=0.0.0.0:8080 \
    GATEHOUSE_LOG_FORMAT=json
EXPOSE 8080
# scripts/lib.sh stops gatehouse with SIGINT too.
STOPSIGNAL SIGINT
# Port 8080: change it here too if GATEHOUSE_HTTP_LISTEN moves.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD curl -fsS -o /dev/null http://127.0.0.1:8080/-/readiness || exit 1
ENTRYPOINT ["gatehouse"]
CMD ["serve"]
