"""Test guests: C, Go and WAT sources compiled to Wasm by build.py."""
