"""hashbench: deep image-hashing methods, datasets and exact retrieval evaluation on PyTorch Lightning."""
__version__ = "0.1.0"
