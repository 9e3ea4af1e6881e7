"""A real local Kubernetes control plane (etcd + kube-apiserver) for development and tests."""
