"""`gesture-maze loadtest`: simulated players and spectators against a running server.

Modules: `frames` (pre-encoded JPEG pool from the shared photos), `clients` (player, spectator and
seed-style `POST /predict` simulations), `scrape` (server CPU/memory/stages from /metrics), `stats`
(percentiles, the JSON report and the human table), `runner` (ramp-up, duration, progress) and `cli`.
"""
