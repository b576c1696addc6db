"""pydantic v2 models of the controller's API (proto3 JSON mapping)."""
