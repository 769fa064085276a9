"""Training: the loop (resumable, one process or one per GPU) and its parts, each tested alone.
"""
