"""The operator's console: one web page over what openfero already keeps.

It reads the alert archive and the outcome stream, the dead-letter queue
(taken and handed back, as `openfero dlq list` does), and the cluster's
Jobs, definitions and events, and holds nothing that is not in them: a
restarted console reads it all again. It sits on top, beside the
`openfero` command: it imports ``shared``, ``openfero`` (records,
replaying, authoring) and the dispatcher's lookup and rendering, and
neither service imports it.

Modules: ``timeline`` (alerts and their Jobs; no I/O), ``charts`` (no I/O),
``following`` (the streams), ``cluster`` (Jobs, definitions, events),
``deadletters`` (readings and actions), ``probing`` (queues, consumers),
``live`` (server-sent events), ``security`` and ``csrf`` (who may do what),
``views`` (routes and templates), ``cli`` (the command).
"""
