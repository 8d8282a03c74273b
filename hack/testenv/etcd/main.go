// Command etcd is the upstream etcd server (go.etcd.io/etcd/server/v3/etcdmain), built from
// the Go module proxy for kubesaga's local test platform (hack/testenv.sh).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
