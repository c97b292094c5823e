"""Frames to commands on the server: the shared frame pool, feedback recording, drift monitoring."""
