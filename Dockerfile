# syntax=docker/dockerfile:1
# Portico's container image: the `portico` binary on a distroless base, running as
# a non-root user.
#
#   docker build -t portico:dev .
#   docker build --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) -t REGISTRY/portico:0.1.0 .
#
# scripts/check-chart.sh builds the binary with the same cargo command and runs it,
# so a machine without a container engine still tests what goes into the image.

# ---- build stage -------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The registry and target caches survive between builds (BuildKit); the binary is
# copied out of the cache mount so the next stage can take it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile dist --locked -p portico-controller \
    && install -D -m 0755 target/dist/portico /out/portico \
    && /out/portico --version

# ---- runtime stage -----------------------------------------------------------------
# glibc, libgcc and CA certificates, no shell, no package manager; user 65532.
FROM gcr.io/distroless/cc-debian12:nonroot

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="portico" \
      org.opencontainers.image.description="Kubernetes ingress controller in Rust: Ingress v1 compiled into one routing table, swapped into a proxy without reloads" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"

COPY --from=build /out/portico /usr/local/bin/portico
USER 65532:65532
# Plain HTTP, HTTPS, admin (/metrics, /healthz, /readyz). All unprivileged ports.
EXPOSE 8080 8443 10254
ENTRYPOINT ["/usr/local/bin/portico"]
