# kubectl for the chart's `helm test` pod (tests.kubectl.image): the node pulls nothing, so
# make up builds this instead of registry.k8s.io/kubectl. A static kubectl, nothing else.
FROM scratch
COPY kubectl /usr/local/bin/kubectl
ENV PATH=/usr/local/bin
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/kubectl"]
