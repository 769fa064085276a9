"""Data: the competition's files read and checked, the folds, and the training images as tensors.
"""
