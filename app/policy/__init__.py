"""Request policy: authentication and tenant resolution (pure Python)."""
