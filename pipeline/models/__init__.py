"""Model families: the contract they all follow, the registry that picks one, and the built-in families.

Each family is a package of its own under ``families/``, found by the registry and imported only when a run uses
it: a change to one family's code changes neither another family's DVC stages nor its checkpoints' keys.
"""
