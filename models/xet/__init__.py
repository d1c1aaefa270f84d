"""Stagegate's Xet CAS: the content-addressed store the stock `hf_xet` client uploads to.

Written from the published Xet protocol specification (chunk, xorb and shard formats, hashing,
CAS API). The client chunks files, deduplicates chunks, uploads xorbs (compressed chunk
sequences) and shards (file reconstructions); Stagegate verifies every hash against the bytes it
received and, when a commit names a file, rebuilds it from the stored chunks into a blob.
"""
