"""Games and who is in them: the session (game + game-feel rules), its audience, the registry."""
