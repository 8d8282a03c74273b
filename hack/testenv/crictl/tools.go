//go:build tools

// Package tools pins crictl (sigs.k8s.io/cri-tools), which hack/cluster.sh uses to stop and remove
// pod sandboxes on `down` and for debugging.
package tools

import _ "sigs.k8s.io/cri-tools/cmd/crictl"
