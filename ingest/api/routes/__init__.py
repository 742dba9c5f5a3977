"""Route modules, one per resource, each with its own ``APIRouter``."""
