"""Response cache policy: exact + semantic layers, verification, stores (memory / Redis). No Ray here."""
