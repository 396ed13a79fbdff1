"""Routing policy: a trained classifier that scores how likely a prompt needs the large model."""
