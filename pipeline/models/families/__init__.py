"""The built-in model families, one package each: ``pipeline.models.registry`` finds them here.

A family's package holds its params schema (``params.py``), its network and its ``FAMILY`` (in ``__init__``);
the families import nothing of each other, and nothing outside ``pipeline.models`` imports them.
"""
