# Prometheus from Debian's prometheus package, on the local base image (deploy/docker/base-image.sh):
# a stand-in for prom/prometheus where no registry can be reached, with the same paths
# (configuration /etc/prometheus/prometheus.yml, data /prometheus).
#   docker build -f deploy/docker/prometheus.Dockerfile -t bertserve-prometheus:bookworm deploy/docker
ARG BASE_IMAGE=bertserve-base:bookworm
FROM ${BASE_IMAGE}
# The user first, with a fixed id: the package's scripts keep an existing one.
# hadolint ignore=DL3008
RUN groupadd --system --gid 990 prometheus \
    && useradd --system --uid 990 --gid prometheus --home-dir /var/lib/prometheus --shell /usr/sbin/nologin prometheus \
    && apt-get update \
    && apt-get install -y --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -o prometheus -g prometheus /prometheus
USER 990
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", \
     "--web.console.libraries=/usr/share/prometheus/console_libraries", \
     "--web.console.templates=/usr/share/prometheus/consoles"]
