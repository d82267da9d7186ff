"""Releasing the bundles: model-zoo archives with their index, and the checks the model zoo runs on a bundle."""

from xlstm_monai.release.package import package_bundles
from xlstm_monai.release.verify import verify_bundles

__all__ = ["package_bundles", "verify_bundles"]
