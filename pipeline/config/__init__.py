"""Configuration: every section of params.yaml as a typed, validated schema, and the one registry of them.

Stages read their sections here once (``load_section``) and pass plain values on.
"""
