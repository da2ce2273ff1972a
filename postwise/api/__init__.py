"""The HTTP face: FastAPI app, authentication, problem+json errors, one router per resource."""
