"""Tests of the guest builder (dev/wasmlet_dev/guests/build.py)."""
