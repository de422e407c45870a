# syntax=docker/dockerfile:1
#
# One image, three binaries: `ingest`, `worker` and `sim` in /usr/local/bin. Pick one with the command,
# e.g. `docker run IMAGE ingest`, `docker run IMAGE worker`, `docker run IMAGE sim serve ...`.
# Configuration comes only from the environment at run time (see deploy/README.md); nothing secret is
# baked in.
#
#   docker build -t omnidm:local .

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---------------------------------------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS builder
WORKDIR /src
# No `sqlx::query!` macros today; if some appear, build from checked-in `.sqlx` data, never a live database.
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never

# 1. Dependency layer: the manifests only, with stub sources, so this (slow) layer is rebuilt only when
#    Cargo.toml / Cargo.lock change. Stubs cover src/lib.rs, src/main.rs and every `path = "...rs"` a
#    manifest names explicitly, so cargo can parse each package whatever targets it declares. The stub
#    executables are deleted so a stale one can never be shipped.
COPY Cargo.toml Cargo.lock ./
COPY shared/Cargo.toml shared/Cargo.toml
COPY ingest/Cargo.toml ingest/Cargo.toml
COPY worker/Cargo.toml worker/Cargo.toml
COPY sim/Cargo.toml    sim/Cargo.toml
RUN set -eux; \
    for crate in shared ingest worker sim; do \
        for file in src/lib.rs src/main.rs \
            $(sed -n 's/^[[:space:]]*path[[:space:]]*=[[:space:]]*"\([^"]*\.rs\)".*/\1/p' "$crate/Cargo.toml"); do \
            mkdir -p "$(dirname "$crate/$file")"; \
            echo '#![allow(warnings)] fn main() {}' > "$crate/$file"; \
        done; \
    done; \
    cargo build --release --locked -p omnidm-ingest -p omnidm-worker -p omnidm-sim; \
    rm -rf shared/src ingest/src worker/src sim/src; \
    for bin in ingest worker sim; do rm -f "target/release/$bin" "target/release/omnidm-$bin"; done

# 2. The real sources. migrations/ is embedded by `sqlx::migrate!("../migrations")` and fixtures/ by
#    `include_bytes!` in tests, so both sit beside the crates before the real build.
COPY migrations migrations
COPY fixtures   fixtures
COPY shared     shared
COPY ingest     ingest
COPY worker     worker
COPY sim        sim
# COPY keeps the build context's mtimes, which can be older than the stub artifacts above; touch them so
# cargo rebuilds the workspace crates instead of reusing the stubs.
RUN set -eux; \
    find shared ingest worker sim migrations fixtures -type f -exec touch {} +; \
    cargo build --release --locked -p omnidm-ingest -p omnidm-worker -p omnidm-sim; \
    mkdir -p /out; \
    for bin in ingest worker sim; do \
        if [ -x "target/release/$bin" ]; then cp "target/release/$bin" /out/; \
        elif [ -x "target/release/omnidm-$bin" ]; then cp "target/release/omnidm-$bin" "/out/$bin"; \
        else echo "binary '$bin' was not built" >&2; exit 1; fi; \
    done

# ---------------------------------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
LABEL org.opencontainers.image.title="Omniops DM" \
      org.opencontainers.image.description="Instagram DM automation: ingest (webhook edge), worker (queue consumer), sim (Meta/AI stand-in)"

# ca-certificates: TLS to Meta, the AI provider, a managed Postgres or RabbitMQ. curl: HEALTHCHECK only.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid 10001 omnidm; \
    useradd --system --uid 10001 --gid omnidm --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin omnidm

COPY --from=builder /out/ /usr/local/bin/

USER 10001:10001
WORKDIR /tmp
# ingest (INGEST_ADDR), worker (WORKER_ADDR), sim (--addr in compose).
EXPOSE 8080 9090 8090
# The binaries handle SIGTERM themselves: ingest drains for up to 10 s, workers up to WORKER_DRAIN_SECONDS.
STOPSIGNAL SIGTERM

# Liveness of the default command (ingest on :8080). Another binary or port: set HEALTHCHECK_URL at run
# time (e.g. http://127.0.0.1:9090/healthz for a worker) or override the check; docker-compose.yml
# overrides it per service.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD curl -fsS -o /dev/null "${HEALTHCHECK_URL:-http://127.0.0.1:8080/healthz}" || exit 1

CMD ["ingest"]
