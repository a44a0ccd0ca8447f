"""HTTP side of the training service: FastAPI app, routes, request and response models."""
