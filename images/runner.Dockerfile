# tasked-runner, built FROM scratch.
#
# Do not build this file directly: images/build.sh (`make images`) first assembles the build
# context from bin/tasked-runner: the stripped binary, exactly the shared libraries `ldd` lists
# for it plus the dynamic loader, the CA bundle, and an /etc/passwd and /etc/group that know
# only root (0) and nobody (65532). Nothing else: no shell, no package manager, no coreutils.
FROM scratch

ARG VERSION=0.0.0
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z

# rootfs/ is made by images/build.sh; every file is owned by root and read-only for 65532.
COPY rootfs/ /

# OpenSSL (libwebsockets' TLS) reads this; libcurl has the same path built in. There is no
# hashed certificate directory.
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt

# nobody:nobody, numerically, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532

ENTRYPOINT ["/usr/local/bin/tasked-runner"]
CMD ["--controller", "ws://127.0.0.1:8081", "--token-file", "/var/run/secrets/tasked/runner-token", "--work-dir", "/tmp"]

LABEL org.opencontainers.image.title="tasked-runner" \
      org.opencontainers.image.description="Tasked runner: executes tasks dispatched by tasked-controller (distroless, nobody 65532)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.vendor="Tasked" \
      org.opencontainers.image.base.name="scratch"
