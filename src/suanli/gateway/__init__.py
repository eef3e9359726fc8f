"""The OpenAI-compatible gateway: the hot path between tenants and model replicas."""
