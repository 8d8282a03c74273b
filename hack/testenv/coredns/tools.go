//go:build tools

// Package tools pins CoreDNS, the cluster DNS of hack/cluster.sh (built with
// `go build github.com/coredns/coredns` inside this module; no code of ours).
package tools

import _ "github.com/coredns/coredns"
