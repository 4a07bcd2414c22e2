# subrelay in a container. Build and run:
#   docker build -t subrelay .
#   docker run -d --name subrelay -p 8080:8080 -v subrelay-data:/data \
#     -v "$PWD/config.yaml:/etc/subrelay/config.yaml:ro" -e SUBRELAY_CONFIG=/etc/subrelay/config.yaml \
#     -e ADMIN_TOKEN=... subrelay
# Without SUBRELAY_CONFIG (or `serve --config`) the built-in defaults and the environment
# apply. storage.data_dir is /data, a volume: back it up.

# --- build ---------------------------------------------------------------------------------
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
# Cargo.lock pins every dependency; SQLite is compiled in (no runtime library needed).
RUN cargo build --release --locked --bin subrelay \
 && install -m 0755 target/release/subrelay /usr/local/bin/subrelay

# --- run -----------------------------------------------------------------------------------
FROM debian:bookworm-slim
# A fixed non-root user; upstream TLS roots are compiled in (webpki-roots).
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home subrelay \
 && mkdir -p /data /etc/subrelay \
 && chown subrelay:subrelay /data \
 && chmod 0700 /data
COPY --from=build /usr/local/bin/subrelay /usr/local/bin/subrelay
USER subrelay
VOLUME ["/data"]
ENV STORAGE_DATA_DIR=/data \
    SERVER_HOST=0.0.0.0 \
    SERVER_PORT=8080
EXPOSE 8080
# SIGTERM drains in-flight requests for up to server.shutdown_timeout (30 s): give
# `docker stop` more time than that, e.g. `docker stop -t 45 subrelay`.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/subrelay"]
CMD ["serve"]
