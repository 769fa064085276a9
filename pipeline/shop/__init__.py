"""Shop the look: segment any photo and name its items, and find the most similar items of a catalogue.
"""
