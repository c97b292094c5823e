"""The static web client (ES modules, no build step), shipped as package data and served by stream.web."""
