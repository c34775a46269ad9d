"""The app's blueprints."""

from .api import bp as api_bp
from .functions import bp as functions_bp
from .health import bp as health_bp
from .ops import bp as ops_bp
from .tasks import bp as tasks_bp

__all__ = ["api_bp", "functions_bp", "health_bp", "ops_bp", "tasks_bp"]
