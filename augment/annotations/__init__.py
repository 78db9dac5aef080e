"""Annotated datasets (detection boxes, polygon outlines): each format's reader and writer,
and the layout detection that tells ingest which one a source is."""
