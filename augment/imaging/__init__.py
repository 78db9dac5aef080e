"""Image I/O and identity: decoding and encoding (codec), content digests and
perceptual hashes (digests, similarity).
"""
