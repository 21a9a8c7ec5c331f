//go:build tools

// Package tools pins etcd, the store behind the test control plane. It is a
// module of its own so that Kubernetes' requirements cannot move its version.
package tools

import _ "go.etcd.io/etcd/server/v3"
