"""Where things live in OUT: the names every stage, the rerun machinery and the other
commands agree on. Values only, so reading them costs no import."""

MANIFEST_NAME = "manifest.jsonl"  # one record per output file
HEADER_NAME = "augment.json"  # the run header
METADATA_NAME = "metadata.csv"  # per split, Hugging Face imagefolder's (mixing runs only)
CARD_NAME = "README.md"  # the dataset card: Hugging Face reads its features (class names)
CLASSES_NAME = "classes.json"  # the class names in index order, for any loader
STATE_DIR = ".augment"  # this machine's rerun state; never read by a consumer
JOURNAL_DIR = f"{STATE_DIR}/journal"  # records of a run still under way
STATE_NAME = f"{STATE_DIR}/state.json"  # sources' stamps, the last run's digests
OUTPUTS_STATE_NAME = f"{STATE_DIR}/outputs.jsonl"  # outputs' stamps, a line each
# Earlier versions locked this file; it may stay in an OUT they wrote, and means nothing.
LEGACY_LOCK_NAME = f"{STATE_DIR}/lock"
