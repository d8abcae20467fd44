# syntax=docker/dockerfile:1
# ce-operator image: a static, non-root binary on distroless. Built elsewhere (CI with a
# Docker engine); this repository's machines only lint it.

ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
# Dependencies first, so that a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --target x86_64-unknown-linux-musl \
    && rm -rf src
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --target x86_64-unknown-linux-musl --bin ce-operator \
    && cp target/x86_64-unknown-linux-musl/release/ce-operator /ce-operator

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="ce-operator" \
      org.opencontainers.image.description="Kubernetes operator for the Cloud Elements tenancy model" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/ce-tenancy/ce-operator"
COPY --from=build /ce-operator /ce-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/ce-operator"]
CMD ["run"]
