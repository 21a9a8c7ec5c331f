# clonegate — `make help` lists the targets.

.DEFAULT_GOAL := help

K8S_VERSION  ?= v1.37.2
ETCD_VERSION ?= v3.6.8
BIN          := $(CURDIR)/bin
# envtest finds etcd, kube-apiserver and kubectl here (KUBEBUILDER_ASSETS).
ASSETS       := $(BIN)/k8s/$(K8S_VERSION)-etcd-$(ETCD_VERSION)
export KUBEBUILDER_ASSETS := $(ASSETS)

K8S_LDFLAGS := -s -w \
	-X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) \
	-X k8s.io/component-base/version.gitMajor=$(word 1,$(subst ., ,$(K8S_VERSION:v%=%))) \
	-X k8s.io/component-base/version.gitMinor=$(word 2,$(subst ., ,$(K8S_VERSION:v%=%))) \
	-X k8s.io/client-go/pkg/version.gitVersion=$(K8S_VERSION)

# The rest of the cloning pipeline (make run, the agreement matrix) lives
# beside the envtest assets; internal/pipeline finds it here.
PROVISIONER_VERSION ?= v6.4.0
SNAPSHOTTER_VERSION ?= v8.7.0
CSI_SANITY_VERSION  ?= v5.6.0
PIPELINE            := $(BIN)/pipeline
PIPELINE_TOOLS      := $(PIPELINE)/kube-controller-manager $(PIPELINE)/csi-provisioner \
	$(PIPELINE)/snapshot-controller $(PIPELINE)/csi-snapshotter $(PIPELINE)/csi-sanity

# helm renders and lints charts/clonegate in the tests (test/install).
HELM_VERSION ?= v3.22.0
HELM         := $(BIN)/helm
# As helm's own Makefile stamps it: its version, and the Kubernetes version of
# its client-go (the default `helm template` renders for; v1.20 without it).
HELM_K8S_MINOR := $(word 2,$(subst ., ,$(shell sed -n 's|^\tk8s.io/client-go v||p' hack/tools/helm/go.mod)))
HELM_LDFLAGS   := -s -w -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
	-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$(HELM_K8S_MINOR) \
	-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$(HELM_K8S_MINOR)

.PHONY: tools
tools: $(ASSETS)/etcd $(ASSETS)/kube-apiserver $(ASSETS)/kubectl $(PIPELINE_TOOLS) $(HELM) ## Build the control plane and the cloning pipeline from the Go module proxy into bin/ (about 25 min cold).

$(ASSETS)/etcd: hack/tools/etcd/go.mod
	@echo ">> building etcd $(ETCD_VERSION) (about 30s the first time)"
	@mkdir -p $(ASSETS)
	cd hack/tools/etcd && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o $@ go.etcd.io/etcd/server/v3

$(ASSETS)/kube-apiserver: hack/tools/go.mod
	@echo ">> building kube-apiserver $(K8S_VERSION) (about 4 min the first time)"
	@mkdir -p $(ASSETS)
	cd hack/tools && CGO_ENABLED=0 go build -trimpath -ldflags '$(K8S_LDFLAGS)' -o $@ k8s.io/kubernetes/cmd/kube-apiserver

$(ASSETS)/kubectl: hack/tools/go.mod
	@echo ">> building kubectl $(K8S_VERSION)"
	@mkdir -p $(ASSETS)
	cd hack/tools && CGO_ENABLED=0 go build -trimpath -ldflags '$(K8S_LDFLAGS)' -o $@ k8s.io/kubernetes/cmd/kubectl

$(HELM): hack/tools/helm/go.mod
	@echo ">> building helm $(HELM_VERSION) (about 3 min the first time)"
	@mkdir -p $(BIN)
	cd hack/tools/helm && CGO_ENABLED=0 go build -trimpath -ldflags '$(HELM_LDFLAGS)' -o $@ helm.sh/helm/v3/cmd/helm

# Same module as kube-apiserver: built after it, it reuses most of its build cache.
$(PIPELINE)/kube-controller-manager: hack/tools/go.mod | $(ASSETS)/kube-apiserver
	@echo ">> building kube-controller-manager $(K8S_VERSION) (about 5 min after kube-apiserver, 13 min alone)"
	@mkdir -p $(PIPELINE)
	cd hack/tools && CGO_ENABLED=0 go build -trimpath -ldflags '$(K8S_LDFLAGS)' -o $@ k8s.io/kubernetes/cmd/kube-controller-manager

$(PIPELINE)/csi-provisioner: hack/tools/csi-provisioner/go.mod
	@echo ">> building csi-provisioner $(PROVISIONER_VERSION)"
	@mkdir -p $(PIPELINE)
	cd hack/tools/csi-provisioner && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w -X main.version=$(PROVISIONER_VERSION)' -o $@ github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner

$(PIPELINE)/snapshot-controller: hack/tools/external-snapshotter/go.mod
	@echo ">> building snapshot-controller $(SNAPSHOTTER_VERSION)"
	@mkdir -p $(PIPELINE)
	cd hack/tools/external-snapshotter && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w -X main.version=$(SNAPSHOTTER_VERSION)' -o $@ github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller

$(PIPELINE)/csi-snapshotter: hack/tools/external-snapshotter/go.mod | $(PIPELINE)/snapshot-controller
	@echo ">> building csi-snapshotter $(SNAPSHOTTER_VERSION)"
	@mkdir -p $(PIPELINE)
	cd hack/tools/external-snapshotter && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w -X main.version=$(SNAPSHOTTER_VERSION)' -o $@ github.com/kubernetes-csi/external-snapshotter/v8/cmd/csi-snapshotter

# csi-sanity's go.mod has no replace directives: go install works.
$(PIPELINE)/csi-sanity:
	@echo ">> building csi-sanity $(CSI_SANITY_VERSION)"
	@mkdir -p $(PIPELINE)
	GOBIN=$(PIPELINE) CGO_ENABLED=0 go install -trimpath -ldflags '-s -w' github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity@$(CSI_SANITY_VERSION)

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: build
build: ## Build bin/clonegate.
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o bin/clonegate .

.PHONY: run
run: tools build ## Start a local control plane with clonegate, apply config/samples/, stay up until Ctrl-C.
	go build -o bin/clonegate-run ./hack/run
	bin/clonegate-run --clonegate bin/clonegate

.PHONY: test
test: tools ## Unit tests, then end-to-end tests against the real kube-apiserver and kubectl.
	go test -count=1 ./...

.PHONY: matrix
matrix: tools ## Run the agreement matrix in the real pipeline and rewrite its table in README.md and docs/agreement-matrix.md.
	CLONEGATE_MATRIX_WRITE=1 go test -count=1 -timeout 20m -run TestAgreementMatrix -v ./test/matrix/

# benchstat, pinned; fetched by `go run` from the module proxy when first used.
BENCHSTAT := go run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
BENCH_GO  := go test -run '^$$' -bench . -benchmem -count 6 ./webhook/

.PHONY: bench
bench: tools build ## Measure clonegate against a null webhook and no webhook (about 5 min); prints a table, writes bench/results.json.
	go run ./hack/bench --clonegate bin/clonegate --out bench/results.json

.PHONY: bench-go
bench-go: ## Handler benchmarks (ns/op, B/op, allocs/op) into bench/go.txt.
	@mkdir -p bench
	$(BENCH_GO) | tee bench/go.txt

.PHONY: bench-baseline
bench-baseline: bench-go ## Save bench/go.txt as the baseline bench-compare compares with.
	cp bench/go.txt bench/go-baseline.txt

.PHONY: bench-compare
bench-compare: bench-go ## Compare the handler benchmarks with bench/go-baseline.txt using benchstat.
	$(BENCHSTAT) bench/go-baseline.txt bench/go.txt

IMG ?= clonegate:dev

.PHONY: docker-build
docker-build: ## Build the container image $(IMG) (distroless, non-root) with the version from git.
	docker build --build-arg VERSION=$(VERSION) -t $(IMG) .

# make image: the OCI image without a Docker daemon (hack/image, go-containerregistry).
GOARCH         ?= $(shell go env GOARCH)
IMAGE_TAR      ?= bin/clonegate-$(VERSION).oci.tar
IMAGE_BIN      ?= bin/image/clonegate
IMAGE_LICENSES ?= NOASSERTION
IMAGE_SOURCE   ?= https://github.com/clonegate/clonegate
REVISION       := $(shell git rev-parse HEAD 2>/dev/null)
# The commit's time stamps the image, so the same commit builds the same digest.
CREATED        := $(shell git log -1 --format=%ct 2>/dev/null || echo 0)

.PHONY: image
image: ## Build the OCI image tarball $(IMAGE_TAR) without Docker: the static binary on an empty base, user 65532.
	@mkdir -p $(dir $(IMAGE_BIN)) $(dir $(IMAGE_TAR))
	CGO_ENABLED=0 GOOS=linux GOARCH=$(GOARCH) go build -trimpath -ldflags '$(LDFLAGS)' -o $(IMAGE_BIN) .
	cd hack/image && go run . --binary $(abspath $(IMAGE_BIN)) --out $(abspath $(IMAGE_TAR)) --name $(IMG) \
		--version $(VERSION) --revision '$(REVISION)' --created $(CREATED) --licenses '$(IMAGE_LICENSES)' \
		--source $(IMAGE_SOURCE) --arch $(GOARCH)

.PHONY: image-push
image-push: image ## Push $(IMAGE_TAR) to $(IMG) with crane (pinned in hack/image; it uses your docker/podman login).
	rm -rf $(dir $(IMAGE_BIN))layout && mkdir -p $(dir $(IMAGE_BIN))layout && tar -xf $(IMAGE_TAR) -C $(dir $(IMAGE_BIN))layout
	cd hack/image && go tool crane push $(abspath $(dir $(IMAGE_BIN))layout) $(IMG)

.PHONY: chart
chart: $(HELM) ## Package charts/clonegate into bin/charts/ with appVersion $(VERSION), for helm push.
	$(HELM) package charts/clonegate --app-version $(VERSION) --destination bin/charts

.PHONY: deploy
deploy: ## Install clonegate with image $(IMG) into the current kubectl context (config/default: self-managed TLS).
	kubectl kustomize config/default | sed 's|image: clonegate:dev|image: $(IMG)|' | kubectl apply -f -

FUZZTIME ?= 30s
FUZZ_TARGETS := FuzzReview FuzzClaim FuzzSkimClaimList

.PHONY: fuzz
fuzz: ## Run each fuzz target (the webhook handlers, the claim list skim) for FUZZTIME (default 30s); a failure is written to webhook/testdata/fuzz.
	@for t in $(FUZZ_TARGETS); do \
		echo ">> $$t for $(FUZZTIME)"; \
		go test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 100x ./webhook/ || exit 1; \
	done

SOAK ?= 10m
.PHONY: test-long
test-long: tools ## Fault tests that take long: the soak (SOAK, default 10m) of steady reviews, RSS and goroutines sampled.
	CLONEGATE_SOAK=$(SOAK) go test -count=1 -timeout 0 -run '^TestSoak' -v ./test/e2e/

# govulncheck, pinned; it needs the vulnerability database at vuln.go.dev.
GOVULNCHECK := go run golang.org/x/vuln/cmd/govulncheck@v1.1.4

.PHONY: vuln
vuln: ## govulncheck (pinned); says SKIPPED, and passes, only when the vulnerability database cannot be reached.
	@out=$$($(GOVULNCHECK) ./... 2>&1) && { echo "$$out"; exit 0; }; rc=$$?; echo "$$out"; \
	if echo "$$out" | grep -q 'fetching vulnerabilities'; then \
		echo ">> govulncheck SKIPPED: the vulnerability database (vuln.go.dev) cannot be reached from here; run make vuln where it can"; exit 0; \
	fi; exit $$rc

.PHONY: lint
lint: ## gofmt and go vet.
	@# Not tee /dev/stderr: reopening stderr truncates a log file it is redirected to.
	@files="$$(gofmt -l .)"; test -z "$$files" || { echo "$$files"; echo "gofmt: files above need formatting"; exit 1; } >&2
	go vet ./...

.PHONY: help
help: ## List the targets.
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'
