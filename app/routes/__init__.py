"""HTTP routes, one module per resource, named after its URL."""
