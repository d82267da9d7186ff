"""The bundles/ folder is installed inside the package, as ``xlstm_monai.bundles``, so a wheel carries them."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["xlstm_monai", "xlstm_monai.*"]) + ["xlstm_monai.bundles"],
    package_dir={"xlstm_monai.bundles": "bundles"},
)
