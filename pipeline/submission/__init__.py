"""Submission: the CSV Kaggle accepts, written from instances and checked as Kaggle checks it.
"""
