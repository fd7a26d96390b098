// Package k8s only anchors this wrapper module; the binaries are built from
// k8s.io/kubernetes/cmd/... by hack/build-k8s.sh.
package k8s
