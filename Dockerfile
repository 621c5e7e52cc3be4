# brook in a container: build the release binary, run it as a non-root user in a slim Debian image.
#   docker build -t brook .
#   docker run -p 9092:9092 -p 9464:9464 -v brook-data:/var/lib/brook/data brook
# Configuration: BROOK_<KEY> variables (Kafka property names, dots as underscores) or arguments after the
# image name (`--override key=value`). Clients on other hosts need BROOK_ADVERTISED_LISTENERS set to an
# address they can reach (the default, localhost:9092, suits clients on the Docker host).

FROM rust:1.95-slim-trixie AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin brook

FROM debian:trixie-slim
RUN groupadd --system --gid 10001 brook \
    && useradd --system --uid 10001 --gid brook --home-dir /var/lib/brook brook \
    && mkdir -p /var/lib/brook/data \
    && chown -R brook:brook /var/lib/brook
COPY --from=build /src/target/release/brook /usr/local/bin/brook
ENV BROOK_LISTENERS=PLAINTEXT://0.0.0.0:9092 \
    BROOK_ADVERTISED_LISTENERS=PLAINTEXT://localhost:9092 \
    BROOK_LOG_DIRS=/var/lib/brook/data \
    BROOK_METRICS_LISTENER=0.0.0.0:9464
VOLUME /var/lib/brook/data
EXPOSE 9092 9464
USER 10001:10001
WORKDIR /var/lib/brook
HEALTHCHECK --interval=10s --timeout=6s --start-period=30s --retries=3 CMD ["brook", "--health-check"]
ENTRYPOINT ["brook"]
