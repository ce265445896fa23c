# nginx from Debian's nginx-light package, on the local base image (deploy/docker/base-image.sh):
# a stand-in for the nginx image where no registry can be reached. Like the official image, it
# renders /etc/nginx/templates/*.template into /etc/nginx/conf.d/ with the environment at start.
#   docker build -f deploy/docker/nginx.Dockerfile -t bertserve-nginx:bookworm deploy/docker
ARG BASE_IMAGE=bertserve-base:bookworm
FROM ${BASE_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx-light gettext-base \
    && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/default \
    && ln -sf /dev/stdout /var/log/nginx/access.log \
    && ln -sf /dev/stderr /var/log/nginx/error.log
COPY nginx-entrypoint.sh /usr/local/bin/nginx-entrypoint
EXPOSE 80
# nginx finishes the requests it has on SIGQUIT (graceful shutdown).
STOPSIGNAL SIGQUIT
ENTRYPOINT ["/usr/local/bin/nginx-entrypoint"]
CMD ["nginx", "-g", "daemon off;"]
