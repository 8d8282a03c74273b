// The pause container of hack/cluster.sh (no dependencies).
module kubesaga.local/testenv/pause

go 1.24.0
