"""Kaggle: the API client with clear errors, submitting, and the offline notebook's bundle and session.
"""
