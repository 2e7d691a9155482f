# The node's pod sandbox image (containerd's sandbox_image): one static program, nothing else.
FROM scratch
COPY pause /pause
USER 65535:65535
ENTRYPOINT ["/pause"]
