// The pod sandbox's pause process for the real node's containerd (no registry to pull one).
module wasmlet.dev/hack/pause

go 1.26.0
