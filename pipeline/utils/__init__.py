"""Utilities every package shares: the error type, atomic files, locks, checked reads, safe paths, checkpoints, digests,
the device.
"""
