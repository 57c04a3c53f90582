# ringcache: a multi-stage build. The first stage compiles the release binary; the final
# image is Debian slim with the binary alone, run by an unprivileged user.
#
#   docker build -t ringcache .
#   docker run --rm -p 6379:6379 -p 11211:11211 -p 9100:9100 ringcache
#
# The default command runs one cluster-enabled node listening on every interface (a
# container's loopback is its own), keeping its identity in /data. See deploy/README.md.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
RUN cargo build --release --locked -p ringcache \
    && cp target/release/ringcache /usr/local/bin/ringcache \
    && strip /usr/local/bin/ringcache

FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 ringcache \
    && useradd --system --uid 10001 --gid ringcache --home-dir /data --create-home \
       --shell /usr/sbin/nologin ringcache
COPY --from=build /usr/local/bin/ringcache /usr/local/bin/ringcache
USER 10001:10001
WORKDIR /data
# RESP, memcached, admin HTTP (/metrics, /healthz, dashboard), cluster bus.
EXPOSE 6379 11211 9100 16379
STOPSIGNAL SIGTERM
ENTRYPOINT ["ringcache"]
CMD ["server", "--bind", "0.0.0.0", "--cluster-enabled", "--dir", "/data"]
