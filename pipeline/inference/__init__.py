"""Inference: predictions with TTA, the raw prediction store, and post-processing into instances.
"""
