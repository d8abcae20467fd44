# syntax=docker/dockerfile:1
# ce-operator image: one static, non-root binary on distroless/static. `make image` builds
# the same image without a Docker engine (hack/image.sh: same binary build, same config);
# hack/e2e.sh checks that the two configs agree (hack/dockerfile.py config).

# Base images are pinned by digest (checked by `hack/dockerfile.py pinned` in `make test`): a
# build is reproducible and a moved tag cannot change what ships. To update one, resolve its
# tag (`crane digest rust:1.95-bookworm`) and replace the digest; the tag stays for readers.
FROM rust:1.95-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1 AS build
WORKDIR /src
# Statically linked against glibc: no musl toolchain needed, and the same command as
# hack/image.sh. The explicit --target keeps build scripts and proc-macros dynamic.
ENV CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"
# Dependencies first, so that a source change does not rebuild them. Cargo parses every
# target the manifest declares, so the stub has a file for each (lib, bins, benches).
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src/bin benches \
    && echo 'fn main() {}' > src/main.rs \
    && cp src/main.rs src/bin/kubectl-ce.rs \
    && cp src/main.rs benches/scale.rs \
    && cp src/main.rs benches/authz.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --target x86_64-unknown-linux-gnu --bin ce-operator \
    && rm -rf src benches
COPY src ./src
COPY benches ./benches
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --target x86_64-unknown-linux-gnu --bin ce-operator \
    && mkdir -p out && cp target/x86_64-unknown-linux-gnu/release/ce-operator out/ce-operator

FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="ce-operator" \
      org.opencontainers.image.description="Kubernetes operator for the Cloud Elements tenancy model" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/ce-tenancy/ce-operator"
COPY --from=build /src/out/ce-operator /ce-operator
USER 65532:65532
# http (/metrics, probes), webhook, authorization (HTTP), authorization (gRPC): the chart's ports.
EXPOSE 8080 9443 8082 8083
ENTRYPOINT ["/ce-operator"]
CMD ["run"]
