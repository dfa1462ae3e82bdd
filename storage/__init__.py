"""Storage: the Zarr run store, PyAV video decode/encode and exporters."""
