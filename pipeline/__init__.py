"""iMaterialist (Fashion) 2019 pipeline: the library behind the DVC stages in ``stages/``."""
