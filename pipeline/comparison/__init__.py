"""The comparison of model families: speed, size and memory measured alike, scores with their intervals.
"""
