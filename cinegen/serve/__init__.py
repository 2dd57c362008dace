"""The video generation server: HTTP API, durable job queue, workers and a web page.

`cinegen serve` runs the API (FastAPI + uvicorn) and worker processes over one database
(SQLite by default, PostgreSQL by URL); `cinegen worker` adds workers elsewhere. Every job
is a database row before the API answers, so the queue survives any process dying.
"""
