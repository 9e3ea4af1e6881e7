"""wasmlet: run WebAssembly workloads on Kubernetes the way Deployments run containers."""
