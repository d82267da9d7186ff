"""xLSTM-based 3D networks, transforms and tools for MONAI bundles."""

__version__ = "0.1.0"
