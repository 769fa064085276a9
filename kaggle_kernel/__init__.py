"""What it takes to run the DVC pipeline's stages inside a Kaggle notebook (docs/kaggle.md)."""
