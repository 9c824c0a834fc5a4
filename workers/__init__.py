"""The Celery side: the app, the conductor service and the compute service.

Queues (all JSON, late acknowledgement, prefetch 1):
  ``<prefix>.conductor``        flows to run, reports from compute hosts
  exchange ``<prefix>.compute``, routing key ``compute.<host>``: hypervisor steps
"""
