"""The ingress request path as ordered stages (see ``pipeline.py`` and the README's stage table)."""
