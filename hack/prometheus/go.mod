// Wrapper module for Prometheus, kept apart from hack/k8s so Prometheus's requirements
// (its own client-go among them) do not move the versions Kubernetes pins.
module modelrollout.dev/hack/prometheus

go 1.26.7

require github.com/prometheus/prometheus v0.316.0
