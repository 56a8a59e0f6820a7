"""The booking REST API under /api/v1 (JSON, problem+json errors, OpenAPI 3.1)."""
