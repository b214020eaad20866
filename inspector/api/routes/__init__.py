"""The dashboard's REST routes, one `APIRouter` module per subject (`inspector.api.app` includes them)."""
