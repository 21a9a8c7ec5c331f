//go:build tools

// Package tools pins the snapshot-controller and csi-snapshotter the pipeline
// runs (make tools). Upstream's go.mod replaces client/v8 with ./client, a
// directory absent from the module zip, so `go install ...@v8.7.0` refuses
// it; this module requires client/v8 v8.7.0 from the proxy instead, with
// upstream's other requirements and replaces (k8s.io staging at v0.37.0).
package tools

import (
	_ "github.com/kubernetes-csi/external-snapshotter/v8/cmd/csi-snapshotter"
	_ "github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller"
)
