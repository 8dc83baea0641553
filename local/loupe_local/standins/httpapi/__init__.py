"""API Gateway HTTP APIs: ``service`` (routes, one loopback port per API, CORS) over ``auth`` (the JWT authorizer)
and ``events`` (payload format 2.0)."""
