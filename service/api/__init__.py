"""HTTP: wire schemas, routes, middleware and the error mapping. Nothing else knows HTTP."""
