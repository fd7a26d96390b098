"""modelrollout-server leaves the contract's modules to modelrollout-contract, its dependency.

setuptools can list a package's modules but not leave some out, and listing them would drop any module
added later without a word; so the build step filters the contract's three files instead.
"""

from __future__ import annotations

from setuptools import setup
from setuptools.command.build_py import build_py

# Shipped by serving/contract/pyproject.toml.
CONTRACT_MODULES = {("modelserver", "__init__"), ("modelserver", "contract"), ("modelserver", "contract_parse")}


class BuildWithoutContract(build_py):
    def find_package_modules(self, package: str, package_dir: str) -> list[tuple[str, str, str]]:
        modules = super().find_package_modules(package, package_dir)
        return [m for m in modules if (m[0], m[1]) not in CONTRACT_MODULES]


setup(cmdclass={"build_py": BuildWithoutContract})
