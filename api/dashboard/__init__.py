"""The web dashboard, served by the HTTP API's app under ``/dashboard`` (``site.install``)."""
