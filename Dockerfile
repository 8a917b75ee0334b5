# genservice: a static binary on distroless, running as the non-root user 65532.
#
#   docker build --build-arg VERSION="$(git describe --always --dirty)" -t genservice .
#
# Configure `serve` with flags after the image name or GENSERVICE_* variables, e.g.
# GENSERVICE_TLS_CERT, GENSERVICE_TLS_KEY, GENSERVICE_CLIENT_CA and LIVEPEER_API_KEY_FILE
# pointing at mounted files (see `genservice serve --help`). It listens on :8443.
#
# The go build line is the one .ci/run builds and checks (step "release build").
#
# Base images are to be pinned by digest, so that rebuilding a commit uses the same
# toolchain and runtime files whatever the tags point to later. They are NOT pinned yet:
# this file was last edited where no registry could be reached, and a digest must be
# read from the registry, never guessed. To pin, on a machine with registry access:
#   docker buildx imagetools inspect <image:tag>      # the "Digest:" line
# set the ARG to <image:tag>@sha256:<64 hex digits> and delete the UNPINNED line above
# it. A build can also pin without editing: --build-arg BUILD_IMAGE=<image:tag>@sha256:...
# `go test ./deploy/...` enforces the rule (TestDockerfileBaseImagesPinned): each FROM
# is pinned or marked UNPINNED, and GENSERVICE_REQUIRE_PINNED_IMAGES=1 (for release CI)
# fails on the marked ones.

# UNPINNED: golang:1.26-bookworm
ARG BUILD_IMAGE=golang:1.26-bookworm
# UNPINNED: the distroless static nonroot image
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
# Modules in their own layer: downloaded again only when go.mod or go.sum change.
COPY go.mod go.sum ./
COPY gen/go.mod gen/go.sum ./gen/
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/genservice ./cmd/genservice

# distroless/static has CA certificates (for the Livepeer gateway's TLS), tzdata and a
# nonroot user, and no shell.
FROM ${RUNTIME_IMAGE}
COPY --from=build /out/genservice /genservice
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["/genservice"]
CMD ["serve"]
