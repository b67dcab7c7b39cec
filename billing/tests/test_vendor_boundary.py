"""Only `billing/stripe_client.py` talks to Stripe: no other product module imports `stripe`."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_PACKAGES = ("accounts", "billing", "chatrooms", "core", "gemini_clone", "usage")


def _imports_stripe(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import) and any(
            alias.name.split(".")[0] == "stripe" for alias in node.names
        ):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "stripe":
            return True
    return False


def test_only_the_stripe_client_imports_stripe():
    importers = {
        str(path.relative_to(ROOT))
        for package in PRODUCT_PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "tests" not in path.parts and _imports_stripe(path)
    }

    assert importers == {"billing/stripe_client.py"}
