# syntax=docker/dockerfile:1
# repvgg-serve: multi-stage build. Builder: Rust on Debian bookworm. Runtime: slim bookworm with
# the binary, ONNX Runtime's shared libraries (the same pinned PyPI wheels as the build: the CPU
# build for fp32, the OpenVINO build for bf16), a non-root
# user, and the fused-model cache on a writable path meant for a volume.
#
# Built for the architecture it runs on: linux/amd64 or linux/arm64 (TARGETARCH picks the ONNX
# Runtime wheel). Both at once: docker buildx build --platform linux/amd64,linux/arm64 .
# On arm64 the OpenVINO runtime is absent (its wheel is x86_64 only): --precision bf16 refuses.

FROM docker.io/library/rust:1.95-bookworm AS builder
WORKDIR /src
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-pip=23.* nasm=2.16.* \
 && rm -rf /var/lib/apt/lists/*
COPY . .
# Set by BuildKit from --platform (amd64, arm64); the builder's own architecture otherwise.
ARG TARGETARCH
# One step from the wheels to /out, ending with the build's own files deleted (target/, the
# crate sources, the wheels: several GB) so that the layer this step leaves holds /out only.
RUN arch="${TARGETARCH:-$(uname -m)}" \
 && REPVGG_ARCH="$arch" scripts/setup-ort.sh /opt/ort \
 && mkdir -p /out/ort-openvino \
 && if [ "$arch" = amd64 ] || [ "$arch" = x86_64 ]; then \
      REPVGG_ARCH="$arch" scripts/setup-ort-openvino.sh /opt/ort-openvino \
      && cp /opt/ort-openvino/*.so* /out/ort-openvino/; \
    fi \
 && cargo build --release --locked --bin repvgg-serve \
 && install -D target/release/repvgg-serve /out/repvgg-serve \
 && install -D /opt/ort/libonnxruntime.so.1.31.1 /out/libonnxruntime.so.1.31.1 \
 && rm -rf target /opt/ort /opt/ort-openvino "$CARGO_HOME/registry" "$CARGO_HOME/git" /root/.cache

FROM docker.io/library/debian:bookworm-slim
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="repvgg-serve" \
      org.opencontainers.image.description="RepVGG image classification over HTTP (fused at start-up, ONNX Runtime)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates=20230311* \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin repvgg \
 && mkdir -p /var/cache/repvgg-serve /models \
 && chown 10001:10001 /var/cache/repvgg-serve
COPY --from=builder /out/repvgg-serve /usr/local/bin/repvgg-serve
COPY --from=builder /out/libonnxruntime.so.1.31.1 /usr/local/lib/libonnxruntime.so.1.31.1
# The OpenVINO build of ONNX Runtime for --precision bf16 (its libraries find each other
# through $ORIGIN, so they stay together in one folder).
COPY --from=builder /out/ort-openvino/ /usr/local/lib/ort-openvino/
# MALLOC_MMAP_THRESHOLD_: buffers of 4 MiB and more are mmapped and go back to the system when
# freed. glibc's default raises the threshold up to 32 MiB after the first large free, and the
# start-up's fusion and graph optimisation then stay resident: B3 held 730 MiB after a cold
# start instead of 497 MiB (docs/footprint.md). The binary sets the same itself when the
# variable is absent; it stays here to say so, and to be changed in one place.
ENV ORT_DYLIB_PATH=/usr/local/lib/libonnxruntime.so.1.31.1 \
    ORT_OPENVINO_DYLIB_PATH=/usr/local/lib/ort-openvino/libonnxruntime.so.1.24.1 \
    MALLOC_MMAP_THRESHOLD_=4194304 \
    REPVGG_CACHE_DIR=/var/cache/repvgg-serve \
    REPVGG_HOST=0.0.0.0 \
    REPVGG_PORT=8080 \
    REPVGG_GRPC_PORT=8081 \
    REPVGG_ADMIN_PORT=8082 \
    REPVGG_LOG_FORMAT=json
VOLUME ["/var/cache/repvgg-serve"]
USER 10001:10001
EXPOSE 8080 8081 8082
# The binary checks itself (no curl in the image): GET /healthz on 127.0.0.1:$REPVGG_PORT,
# over TLS pinned to the server's own certificate when REPVGG_TLS_CERT is set (configure TLS
# through the environment, not flags, so the check follows it).
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["/usr/local/bin/repvgg-serve", "probe"]
ENTRYPOINT ["/usr/local/bin/repvgg-serve"]
CMD ["serve"]
