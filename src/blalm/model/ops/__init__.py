"""Token-mixer kernels: each op sits behind a small registry with a pure-PyTorch reference."""
