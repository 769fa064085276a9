"""What it takes to run the DVC pipeline's stages inside a Kaggle notebook (README, "Kaggle notebook")."""
