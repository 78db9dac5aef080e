"""The stages of `expand`, in run order.

ingest (read SRC) -> duplicates (keep copies together) -> holdout (split originals;
balance gives per-class variant counts) -> plan (jobs as pure data) -> reconcile (what an
earlier run already made) -> executor + worker (pixels, in processes) -> manifest (records,
header, metadata.csv).
"""
