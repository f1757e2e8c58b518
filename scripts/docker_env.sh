# Sourced by the docker scripts: where tfpipe's own Docker engine listens and keeps its state.
# A socket and data root of its own, so it never collides with another engine on the host,
# and its images (the local bases, the build cache) survive between runs.
TFPIPE_DOCKER_RUN=${TFPIPE_DOCKER_RUN:-/run/tfpipe-docker}
TFPIPE_DOCKER_DATA=${TFPIPE_DOCKER_DATA:-/var/lib/tfpipe-docker}
export DOCKER_HOST=${TFPIPE_DOCKER_HOST:-unix://$TFPIPE_DOCKER_RUN/docker.sock}
# The client of Debian's docker.io: it builds with the engine's built-in BuildKit (a newer
# client elsewhere on PATH may insist on the buildx plugin, which is not installed).
DOCKER=${DOCKER:-/usr/bin/docker}
export DOCKER_BUILDKIT=1
