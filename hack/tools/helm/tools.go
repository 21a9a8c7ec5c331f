//go:build tools

// Package tools pins helm, which the chart tests run (helm lint, helm
// template). A module of its own so that its requirements cannot move the
// control plane's.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
