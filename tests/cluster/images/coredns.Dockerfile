# The cluster DNS: CoreDNS built by tests/cluster/build-kube.sh (static, only the plugins the
# cluster zone needs), nothing else. nobody (65532); port 53 is allowed to it by the pod's
# net.ipv4.ip_unprivileged_port_start sysctl, not by a capability.
FROM scratch
COPY coredns /coredns
USER 65532:65532
ENTRYPOINT ["/coredns"]
