"""A real node (containerd, kubelet, kube-scheduler) on the local control plane."""
