"""The commands other than `expand`: audit, diff, preview, prune-cache, and the
plain-text tables their reports share.
"""
