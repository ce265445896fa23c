"""What runs models: a served model (its sessions, batcher, fast lane and inline runs) and the
result cache.

The rest of the service reaches the engine through a served model's narrow surface
(service/engine/model.py): `submit` rows and await them, `run_now` at low load, then its
health and queue (`stalls`, `check_admission`, `room`, `full`, `count_refusal`, `queued`,
`idle`, `limits`), `start` and `stop`. Token ids go in and output rows come out as numpy
arrays, and deadlines are loop times: the seam a process boundary can stand behind.
"""
