"""sscl.data: skeleton layouts, the Zarr corpus, raw-format converters and the input pipeline."""
