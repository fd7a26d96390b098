// Wrapper module for etcd, kept apart from hack/k8s so etcd's requirements
// do not move the versions Kubernetes pins.
module modelrollout.dev/hack/etcd

go 1.26.0

require go.etcd.io/etcd/server/v3 v3.6.8
