"""The HTTP server side of the app: what gunicorn.conf.py plugs into gunicorn (its worker class)."""
