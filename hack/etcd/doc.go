// Package etcd only anchors this wrapper module; etcd itself is built from
// go.etcd.io/etcd/server/v3 by hack/build-k8s.sh.
package etcd
