"""Sharded output formats (`--output-format webdataset|parquet`): OUT's outputs packed into
shards after the run, beside the folders the run and its reruns work from."""
