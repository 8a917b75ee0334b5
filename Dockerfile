# genservice: a static binary on distroless, running as the non-root user 65532.
#
#   docker build --build-arg VERSION="$(git describe --always --dirty)" -t genservice .
#
# Configure `serve` with flags after the image name or GENSERVICE_* variables, e.g.
# GENSERVICE_TLS_CERT, GENSERVICE_TLS_KEY, GENSERVICE_CLIENT_CA and LIVEPEER_API_KEY_FILE
# pointing at mounted files (see `genservice serve --help`). It listens on :8443.
#
# The go build line is the one .ci/run builds and checks (step "release build").

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules in their own layer: downloaded again only when go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/genservice ./cmd/genservice

# distroless/static has CA certificates (for the Livepeer gateway's TLS), tzdata and a
# nonroot user, and no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/genservice /genservice
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["/genservice"]
CMD ["serve"]
