"""The async batch lane: OpenAI Files/Batches, async single requests, a Redis Streams queue, workers' logic.

Pure Python (no ``ray`` import): ``deployments/batch.py`` runs the workers, ``app/api/`` holds the HTTP
handlers. See docs/batch.md.
"""
