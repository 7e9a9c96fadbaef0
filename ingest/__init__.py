"""Ingest: the webhook Alertmanager posts to.

Stateless. It turns each webhook into one persistent message per alert and
answers 200 only once the broker has confirmed every one of them. It never
talks to Kubernetes and never imports the dispatcher.
"""
