//go:build tools

// Package tools pins the control-plane binaries the tests run against:
// kube-apiserver and kubectl, built from source at the versions in go.mod
// (etcd lives in ./etcd: Kubernetes would pull it up to another version).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
