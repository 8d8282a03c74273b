//go:build tools

// Package tools pins the upstream node binaries that hack/cluster.sh builds for its one-node
// cluster (kubelet, kube-proxy, kube-scheduler, kube-controller-manager) and kubectl. No code of ours is added:
// `go build k8s.io/kubernetes/cmd/kubelet` inside this module builds the upstream command.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
