"""The OpenAI wire: HTTP handlers (thin), response rendering, body parsing. No Serve classes."""
