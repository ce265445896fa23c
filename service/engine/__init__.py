"""What runs models: a served model (its sessions, batcher, fast lane and inline runs) and the
result cache. The tasks reach it through AppState and a served model's narrow surface.
"""
