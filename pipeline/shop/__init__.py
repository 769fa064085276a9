"""Shop the look: segment any photo and name its items, and find the most similar items of a catalogue.

Public names, imported on first use (docs/development.md, "Where a change goes").
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "features": ["embed", "FeaturesError", "require_features"],
        "catalogue": ["embed_instances"],
        "index": ["Catalogue", "CatalogueError", "build_index", "load_catalogue", "save_catalogue"],
        "build": ["build_catalogue", "catalogue_key"],
        "scores": ["retrieval_scores", "recall_at_k"],
        "segment": ["Item", "Photo", "PhotoError", "read_photo", "segment_photo"],
        "render": ["overlay", "items_json", "contact_sheet", "tile"],
    },
)
