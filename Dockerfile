# syntax=docker/dockerfile:1
# clonegate: `make docker-build IMG=registry.example.com/clonegate:v1.0.0`.

FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so source edits reuse the download layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/clonegate .

# No shell, no package manager, no root: the binary and CA certificates only.
FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/clonegate /clonegate
USER 65532:65532
ENTRYPOINT ["/clonegate"]
CMD ["serve"]
