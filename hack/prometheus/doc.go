// Package prometheus only anchors this wrapper module; prometheus and promtool
// are built from github.com/prometheus/prometheus/cmd/... by hack/build-prometheus.sh.
package prometheus
