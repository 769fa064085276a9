"""Evaluation: the competition metric, mask AP, the post-processing search, the report and the gallery.
"""
