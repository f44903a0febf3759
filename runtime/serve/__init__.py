"""`charwright serve`: the engine (continuous batching on a scheduler thread, no HTTP) and the
OpenAI-compatible HTTP app over it. Only app.py needs the [serve] extra."""
