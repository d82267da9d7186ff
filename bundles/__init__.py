"""The MONAI bundles of xlstm-monai; installed with the package as ``xlstm_monai.bundles``."""
