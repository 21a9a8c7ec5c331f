//go:build tools

// Package tools pins the external-provisioner the pipeline runs (make tools).
// `go install ...@v6.4.0` refuses it because its go.mod has replace
// directives; this module requires it with the same requirements and
// replaces (the k8s.io staging modules at v0.36.1) instead.
package tools

import _ "github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner"
