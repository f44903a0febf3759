"""`charwright serve`, in two halves. The engine side (continuous batching on a scheduler thread,
no HTTP; importable without the [serve] extra): engine.py (Engine: submit/cancel/drain and the
scheduler pass), request.py, admission.py (the bounded queue), batch.py (the running rows),
priming.py (prompts priming in slices), metrics.py, openai.py (the wire contract, plain data),
state.py, log.py. The HTTP side (needs the extra): relay.py (SSE and whole answers), app.py (the
Starlette app, loading), server.py (uvicorn, bounded heads, drain on SIGTERM)."""
