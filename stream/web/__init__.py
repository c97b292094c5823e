"""The Starlette app: lifespan-owned services, REST endpoints, the play and watch WebSockets."""
