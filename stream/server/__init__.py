"""Running the app: uvicorn with guarded protocols and a graceful drain, one process per core."""
