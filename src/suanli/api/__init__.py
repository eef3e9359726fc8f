"""The control-plane REST API (FastAPI)."""
