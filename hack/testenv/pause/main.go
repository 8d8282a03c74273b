// Command pause is the infrastructure container of every pod on hack/cluster.sh's node: it holds
// the pod's namespaces, reaps zombies (it is PID 1 of the pod) and exits on SIGINT/SIGTERM. It
// replaces registry.k8s.io/pause, which cannot be pulled on machines without a registry.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGINT, syscall.SIGTERM)
	chld := make(chan os.Signal, 16)
	signal.Notify(chld, syscall.SIGCHLD)
	for {
		select {
		case <-term:
			os.Exit(0)
		case <-chld:
			reap()
		}
	}
}

func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
