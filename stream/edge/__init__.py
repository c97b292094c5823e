"""The server's edge: transport limits, Host/Origin guards, rate limits, capped bodies, socket outboxes."""
