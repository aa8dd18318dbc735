"""What keeps jobs moving: the pipeline's steps, the dispatcher, the reconciler and the webhook
sender. Every edge (sessions, provider, object store, HTTP, what to send) is passed in; no
Celery import. Imports everything below it, ``broker`` and ``cli`` nothing of it."""
