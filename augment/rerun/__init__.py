"""The rerun machinery, none of which changes an output byte: what a rerun may trust
(state), the proof that a rerun changes nothing (uptodate), sorting past a memory budget
(spill), and the heap tuning of pixel-work processes (heap).
"""
