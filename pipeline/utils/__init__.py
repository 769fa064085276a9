"""Utilities every package shares: the error type, atomic files, locks, checked reads, safe paths, checkpoints, digests,
the device.

Public names, imported on first use (docs/development.md, "Where a change goes").
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "errors": ["PipelineError"],
        "io": ["DiskFullError", "atomic_path", "atomic_write", "write_json", "as_json"],
        "checkpoint": ["CheckpointError", "save", "load"],
        "fingerprint": ["imported_modules", "source_digest", "file_digest", "file_record", "record_problem"],
        "lock": ["BusyError", "exclusive"],
        "paths": ["UnsafePathError", "inside", "name_problem"],
        "tables": ["DamagedFileError", "read_parquet", "read_json"],
        "device": ["autocast", "use_cuda"],
    },
)
