# The runner image make up installs: images/examples/Dockerfile.runner-with-tools as
# docs/images.md describes it ("Tools from a distribution: copy the binaries and the libraries
# they need"), built by tests/cluster/up-node.sh from a context holding
#   tools/  Debian's static busybox with a link per applet, getent and prlimit (the examples
#           run echo, printf, getent, prlimit, sh, sleep)
#   libs/   the shared libraries those need that the runner image lacks, at their ldd paths
ARG RUNNER_IMAGE=tasked-runner:latest
FROM ${RUNNER_IMAGE}
COPY libs/ /
COPY tools/ /usr/local/bin/
USER 65532:65532
