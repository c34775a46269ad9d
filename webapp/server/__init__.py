"""The server side of the app: what gunicorn.conf.py plugs into gunicorn (its worker class), and the Celery
wiring of the task queue (task_queue.py) that app servers send workflow tasks to and ``flowbridge worker`` runs."""
