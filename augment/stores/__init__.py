"""SRC and OUT in object storage (`s3://`, `gs://`, `memory://`, `file://`) through fsspec:
the store (list, read, create-only writes), the lease that locks OUT, the sources staged by
their listing, and the outputs published shard by shard with their records as commit
markers. docs/scale.md says what is built and what is plan."""
