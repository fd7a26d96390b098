"""A local Kubernetes cluster for tests and the demo: real control plane, pods as processes."""
